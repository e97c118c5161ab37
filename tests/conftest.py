"""Shared fixtures: a migrated store on SQLite (and PostgreSQL when reachable), app contexts,
a fixed clock, and the Chromium options for `dash_duo`.

Speed without shortcuts: Alembic runs once per session per dialect. SQLite tests get a copy of a
migrated template file; PostgreSQL tests get a fresh schema built by replaying exactly the
statements Alembic ran on the session's template schema (so every test still has a schema of
its own that it may alter). The demo is seeded once per dialect per session (`demo_ctx`,
`pg_demo_ctx`). The local peers live in `tests/peers_*.py`, registered as plugins below.

Under CI=true a missing peer (PostgreSQL, Chromium) fails the run instead of skipping.
"""

from __future__ import annotations

import os
import select
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from console.context import AppContext
from console.settings import Settings
from store.db import make_engine, session_factory
from store.migrate import upgrade

pytest_plugins = ["tests.peers_actions", "tests.peers_traffic"]


def _sleep_on_select(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    select.select([], [], [], seconds)


# `.ci/run` runs the time-sensitive folders under Debian's libfaketime 0.9.10 with the monotonic
# clock left real (FAKETIME_DONT_FAKE_MONOTONIC=1: faking it hangs every timed thread wait).
# That version breaks `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`, which Python 3.11's
# `time.sleep` uses, with EINVAL (wolfcw/libfaketime#426): sleep on select() there instead.
if "libfaketime" in os.environ.get("LD_PRELOAD", ""):
    time.sleep = _sleep_on_select

ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_ADMIN_URL = os.environ.get(
    "QUARTERDECK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CAPTURES = PROJECT_ROOT / "captures"
"""Byte-exact captures of real OPA 1.9, Alertmanager 0.25, NGINX 1.22 (captures/README.md)."""

#: The instant tests compute their times from (never the wall clock at import). It lies in the
#: past, so code that still reads the real clock sees these rows as history, never the future.
FIXED_NOW = datetime(2025, 11, 12, 12, 0, tzinfo=UTC)


class FakeClock:
    """A clock for injection (`clock=`): returns ``now`` until a test moves it."""

    def __init__(self, now: datetime = FIXED_NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    """A fresh fixed clock at `FIXED_NOW`."""
    return FakeClock()


def peer_missing(reason: str) -> None:
    """Skip off CI; fail under CI=true, where every peer must be present."""
    if ON_CI:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_setup_options():  # type: ignore[no-untyped-def]
    """Chromium options for dash_duo: headless Debian chromium, no network chatter."""
    from selenium.webdriver.chrome.options import Options

    opts = Options()
    opts.binary_location = (
        os.environ.get("DASH_TEST_CHROMEPATH") or shutil.which("chromium") or "/usr/bin/chromium"
    )
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--no-first-run",
        "--window-size=1400,1000",
    ):
        opts.add_argument(flag)
    return opts


@pytest.fixture
def browser_available() -> None:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        peer_missing("Debian chromium and chromium-driver are not installed")


# -- SQLite: one migrated template file per session, copied per test ---------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session (WAL checkpointed: one file to copy)."""
    path = tmp_path_factory.mktemp("template") / "store.db"
    eng = make_engine(f"sqlite:///{path}")
    upgrade(eng)
    with eng.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    eng.dispose()
    return path


def migrated_sqlite(template: Path, path: Path) -> str:
    """Copy the migrated template to ``path``; return its URL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


# -- PostgreSQL: migrate one template schema per session, replay its DDL per test --------------


@dataclass
class PgTemplate:
    """The session's migrated template schema and the statements Alembic ran to build it."""

    admin: Engine
    schema: str
    ddl: list[str] | None  # None: some statement took parameters, so tests run Alembic instead


def _schema_engine(schema: str) -> Engine:
    engine = make_engine(PG_ADMIN_URL)

    @event.listens_for(engine, "connect")
    def _search_path(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute(f'SET search_path TO "{schema}"')
        dbapi_conn.commit()

    return engine


@pytest.fixture(scope="session")
def pg_template() -> Iterator[PgTemplate]:
    """Run Alembic once per session on a template schema, recording every statement it sends."""
    admin = make_engine(PG_ADMIN_URL)
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        admin.dispose()
        peer_missing(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(exc).__name__}")
    schema = f"t_{uuid.uuid4().hex[:12]}_template"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = _schema_engine(schema)
    sent: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        sent.append((statement, params))

    try:
        upgrade(engine)
    finally:
        engine.dispose()
    # Alembic's own probes (SELECT … pg_catalog) read; everything else builds the schema.
    ddl: list[str] | None = [s for s, _ in sent if not s.lstrip().upper().startswith("SELECT")]
    if any(params for _, params in sent):
        ddl = None
    try:
        yield PgTemplate(admin=admin, schema=schema, ddl=ddl)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _pg_schema_engine(template: PgTemplate) -> Iterator[Engine]:
    """A throwaway schema at head: the template's statements replayed, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with template.admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        if template.ddl is not None:
            conn.execute(text(f'SET LOCAL search_path TO "{schema}"'))
            raw = conn.connection.driver_connection
            assert raw is not None
            for statement in template.ddl:  # psycopg without parameters: sent as written
                raw.execute(statement)
    engine = _schema_engine(schema)
    if template.ddl is None:
        upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()
        with template.admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty store on each dialect (PostgreSQL in a throwaway schema)."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        eng = make_engine(migrated_sqlite(template, tmp_path / "store.db"))
        yield eng
        eng.dispose()
    else:
        yield from _pg_schema_engine(request.getfixturevalue("pg_template"))


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": f"sqlite:///{tmp_path / 'console.db'}",
        "var_dir": tmp_path,
        "demo_mode": True,
        # Pages' own tests read anonymously; sign-in is tested by the auth tests themselves.
        "auth": {"allow_anonymous_read": True},
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def ctx(tmp_path: Path, sqlite_template: Path) -> Iterator[AppContext]:
    """An app context over a migrated, empty SQLite store."""
    url = migrated_sqlite(sqlite_template, tmp_path / "console.db")
    context = AppContext.from_settings(make_settings(tmp_path, database_url=url))
    yield context
    context.engine.dispose()


@pytest.fixture(scope="session")
def demo_ctx(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[AppContext]:
    """An app context over a SQLite store seeded once with the demo sprint (read-only use)."""
    from demo.seed import seed_demo

    tmp = tmp_path_factory.mktemp("demo")
    url = migrated_sqlite(sqlite_template, tmp / "console.db")
    context = AppContext.from_settings(make_settings(tmp, database_url=url))
    seed_demo(context.engine)
    yield context
    context.engine.dispose()


@pytest.fixture
def pg_ctx(tmp_path: Path, pg_template: PgTemplate) -> Iterator[AppContext]:
    """An app context over a migrated, empty PostgreSQL schema."""
    for eng in _pg_schema_engine(pg_template):
        yield AppContext(
            settings=make_settings(tmp_path), engine=eng, sessions=session_factory(eng)
        )


@pytest.fixture(scope="session")
def pg_demo_ctx(
    tmp_path_factory: pytest.TempPathFactory, pg_template: PgTemplate
) -> Iterator[AppContext]:
    """An app context over a PostgreSQL schema seeded once with the demo sprint (read-only)."""
    from demo.seed import seed_demo

    tmp = tmp_path_factory.mktemp("pg-demo")
    for eng in _pg_schema_engine(pg_template):
        seed_demo(eng)
        yield AppContext(settings=make_settings(tmp), engine=eng, sessions=session_factory(eng))


def free_port() -> int:
    """A free loopback port (dash_duo defaults to 8050, which `make run` may hold)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
