"""Engine and session handling for the store (SQLite WAL by default, PostgreSQL for scale).

SQLite gets WAL and a busy timeout so the console, the receivers and the pollers can share one
file; every connection also enforces foreign keys.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 10_000


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached or opened; the message never carries a password."""


def default_sqlite_url(var_dir: Path) -> str:
    """Return the embedded store's URL: a SQLite file under ``var_dir``."""
    return f"sqlite:///{(var_dir / 'quarterdeck.db').resolve()}"


def safe_url(url: str | URL) -> str:
    """Render ``url`` with its password hidden, for errors and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown without anything after the scheme
        text = str(url)
        return text.split("://", 1)[0] + "://…" if "://" in text else "<unparsable URL>"


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


PG_INSERT_PAGE_ROWS = 50
"""Rows per multi-row INSERT on PostgreSQL (see `make_engine`)."""


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Build an engine for ``url``; SQLite files get their parent folder created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            echo=echo,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        event.listen(engine, "connect", _on_sqlite_connect)
        return engine
    postgres = parsed.get_backend_name() == "postgresql"
    return create_engine(
        parsed,
        echo=echo,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5} if postgres else {},
        # psycopg 3 converts every statement's `%(name)s` placeholders in Python; for
        # SQLAlchemy's default 1000-row INSERT … VALUES pages that conversion dominated bulk
        # upserts. 50-row pages: the demo seed on PostgreSQL took 35 s instead of 46 s.
        **({"insertmanyvalues_page_size": PG_INSERT_PAGE_ROWS} if postgres else {}),
    )


def check_connection(engine: Engine) -> None:
    """Open one connection or raise :class:`DatabaseUnavailable` naming the URL (no password)."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise DatabaseUnavailable(
            f"cannot reach database {safe_url(engine.url)}: {reason}"
        ) from exc


def analyze(engine: Engine) -> None:
    """Refresh planner statistics after a bulk load (PostgreSQL ANALYZE, SQLite PRAGMA optimize).

    Fresh tables look empty to PostgreSQL's planner until autovacuum analyzes them, which turns
    joins into nested loops; a bulk loader calls this once it has committed.
    """
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
        elif engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA optimize")
            conn.commit()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory bound to ``engine`` that keeps objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Run one unit of work: commit when the block succeeds, roll back everything when it fails."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
