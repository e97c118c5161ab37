"""Migration 0008 (issue 11): `opa_decisions.nd_builtin_cache`, added and dropped in place so
SQLite keeps the full-text triggers of 0003 (a batch table copy would silently drop them)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import Engine, inspect, text

from store.db import make_engine
from store.migrate import alembic_config, upgrade


def _triggers(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' "
                "AND tbl_name = 'opa_decisions'"
            )
        )
        return sorted(r[0] for r in rows)


def test_0008_adds_and_drops_the_column_and_keeps_the_search_triggers(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine, "0007")
    before = _triggers(engine)
    upgrade(engine, "0008")
    added = {c["name"] for c in inspect(engine).get_columns("opa_decisions")}
    with_column = _triggers(engine)
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0007")
    dropped = {c["name"] for c in inspect(engine).get_columns("opa_decisions")}
    after = _triggers(engine)
    engine.dispose()

    assert len(before) == 3
    assert "nd_builtin_cache" in added and "nd_builtin_cache" not in dropped
    assert before == with_column == after
