"""`/readyz` tells the truth: 503 with the reason while the store refuses writes (a read-only
SQLite file; a PostgreSQL role whose transactions are read-only), 200 when it takes them. The
probe writes nothing (a rolled-back no-op update)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from console.app import create_app
from console.context import AppContext
from store.db import make_engine, session_factory
from store.migrate import head_revision, upgrade
from tests.conftest import PG_ADMIN_URL, make_settings


def _ready(ctx: AppContext) -> tuple[int, dict[str, str]]:
    answer = create_app(ctx).server.test_client().get("/readyz")
    return answer.status_code, answer.json


def test_readyz_is_503_with_the_reason_while_the_sqlite_file_is_read_only(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    writable = AppContext.from_settings(settings)
    upgrade(writable.engine)
    ready = _ready(writable)
    writable.engine.dispose()
    read_only = make_engine(f"sqlite:///file:{tmp_path / 'console.db'}?mode=ro&uri=true")
    ctx = AppContext(settings=settings, engine=read_only, sessions=session_factory(read_only))

    status, body = _ready(ctx)

    assert ready[0] == 200 and ready[1]["status"] == "ready"
    assert status == 503 and body["status"] == "unavailable"
    assert "refuses writes" in body["reason"] and "readonly" in body["reason"]
    with read_only.connect() as conn:  # the probe changed nothing
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == (
            head_revision()
        )
    read_only.dispose()


@pytest.mark.postgres
def test_readyz_is_503_while_the_postgresql_role_is_read_only(pg_ctx: AppContext) -> None:
    role = f"qd_ro_{uuid.uuid4().hex[:8]}"
    admin = pg_ctx.engine
    with admin.connect() as conn:
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar()
    with admin.begin() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(text(f'ALTER ROLE "{role}" SET default_transaction_read_only = on'))
        conn.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"'))
        conn.execute(text(f'GRANT SELECT, UPDATE ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"'))
    engine = make_engine(PG_ADMIN_URL.replace("postgres@", f"{role}@", 1))

    @event.listens_for(engine, "connect")
    def _search_path(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute(f'SET search_path TO "{schema}"')
        dbapi_conn.commit()

    try:
        status, body = _ready(
            AppContext(settings=pg_ctx.settings, engine=engine, sessions=session_factory(engine))
        )
        writable = _ready(pg_ctx)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))

    assert status == 503 and "refuses writes" in body["reason"]
    assert "read-only transaction" in body["reason"]
    assert writable[0] == 200
