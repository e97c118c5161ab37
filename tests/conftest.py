"""Shared fixtures: a migrated store on SQLite (and PostgreSQL when reachable), app contexts,
and the Chromium options for `dash_duo`.

Under CI=true a missing peer (PostgreSQL, Chromium) fails the run instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from console.context import AppContext
from console.settings import Settings
from store.db import make_engine
from store.migrate import upgrade

ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_ADMIN_URL = os.environ.get(
    "QUARTERDECK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PROJECT_ROOT = Path(__file__).resolve().parent.parent


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


def _pg_schema_engine() -> Iterator[Engine]:
    admin = make_engine(PG_ADMIN_URL)
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        admin.dispose()
        peer_missing(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(exc).__name__}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(PG_ADMIN_URL)
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _search_path(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        with dbapi_conn.cursor() as cur:
            cur.execute(f'SET search_path TO "{schema}"')
        dbapi_conn.commit()

    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty store on each dialect (PostgreSQL in a throwaway schema)."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
        upgrade(eng)
        yield eng
        eng.dispose()
    else:
        for eng in _pg_schema_engine():
            upgrade(eng)
            yield eng


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
def ctx(tmp_path: Path) -> Iterator[AppContext]:
    """An app context over a migrated, empty SQLite store."""
    context = AppContext.from_settings(make_settings(tmp_path))
    upgrade(context.engine)
    yield context
    context.engine.dispose()


@pytest.fixture(scope="session")
def demo_ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppContext]:
    """An app context over a SQLite store seeded once with the demo sprint (read-only use)."""
    from demo.seed import seed_demo

    tmp = tmp_path_factory.mktemp("demo")
    context = AppContext.from_settings(make_settings(tmp))
    upgrade(context.engine)
    seed_demo(context.engine)
    yield context
    context.engine.dispose()


@pytest.fixture
def pg_ctx(tmp_path: Path) -> Iterator[AppContext]:
    """An app context over a migrated, empty PostgreSQL schema."""
    from store.db import session_factory

    for eng in _pg_schema_engine():
        upgrade(eng)
        yield AppContext(
            settings=make_settings(tmp_path), engine=eng, sessions=session_factory(eng)
        )


def free_port() -> int:
    """A free loopback port (dash_duo defaults to 8050, which `make run` may hold)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
