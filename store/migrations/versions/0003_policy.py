"""Policy as code: decision full-text search (issue 4).

SQLite gets an external-content FTS5 table over `opa_decisions.input`/`result`, kept current by
triggers (so every writer, not only the receiver, is searchable at commit); PostgreSQL gets an
expression GIN index over the same text. Neither is in the SQLAlchemy metadata (see
`store.models.policy.is_search_object`).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

from store.models.policy import DECISION_FTS_TABLE, DECISION_SEARCH_DOCUMENT, DECISION_SEARCH_INDEX

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FTS = DECISION_FTS_TABLE
SQLITE_UP = [
    f"CREATE VIRTUAL TABLE {FTS} USING fts5("
    "input, result, content='opa_decisions', content_rowid='id', tokenize='unicode61', "
    "detail='none', columnsize=0)",
    f"CREATE TRIGGER {FTS}_ai AFTER INSERT ON opa_decisions BEGIN "
    f"INSERT INTO {FTS}(rowid, input, result) VALUES (new.id, new.input, new.result); END",
    f"CREATE TRIGGER {FTS}_ad AFTER DELETE ON opa_decisions BEGIN "
    f"INSERT INTO {FTS}({FTS}, rowid, input, result) "
    "VALUES ('delete', old.id, old.input, old.result); END",
    f"CREATE TRIGGER {FTS}_au AFTER UPDATE OF input, result ON opa_decisions BEGIN "
    f"INSERT INTO {FTS}({FTS}, rowid, input, result) "
    "VALUES ('delete', old.id, old.input, old.result); "
    f"INSERT INTO {FTS}(rowid, input, result) VALUES (new.id, new.input, new.result); END",
    f"INSERT INTO {FTS}({FTS}) VALUES ('rebuild')",
]
SQLITE_DOWN = [
    f"DROP TRIGGER IF EXISTS {FTS}_au",
    f"DROP TRIGGER IF EXISTS {FTS}_ad",
    f"DROP TRIGGER IF EXISTS {FTS}_ai",
    f"DROP TABLE IF EXISTS {FTS}",
]


def upgrade() -> None:
    """Create the decision search objects for the connected dialect."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in SQLITE_UP:
            op.execute(statement)
    elif dialect == "postgresql":
        op.execute(
            f"CREATE INDEX IF NOT EXISTS {DECISION_SEARCH_INDEX} ON opa_decisions "
            f"USING gin ({DECISION_SEARCH_DOCUMENT})"
        )


def downgrade() -> None:
    """Drop the decision search objects."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in SQLITE_DOWN:
            op.execute(statement)
    elif dialect == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {DECISION_SEARCH_INDEX}")
