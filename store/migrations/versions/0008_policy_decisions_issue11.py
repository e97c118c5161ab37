"""OPA fidelity (issue 11): decisions keep OPA's `nd_builtin_cache`.

Adds `opa_decisions.nd_builtin_cache` (JSON, nullable): the results of non-deterministic
builtins (`time.now_ns`, `rand.intn`, ...) OPA recorded for the decision when its
`decision_logs.nd_builtin_cache` is on, so the impact preview replays a decision with the
values OPA used. Rows stored before this migration have NULL (nothing recorded).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add `nd_builtin_cache` to `opa_decisions`.

    ``recreate="never"``: SQLite gets a plain ALTER TABLE, never a table copy, which would drop
    the full-text triggers 0003 put on `opa_decisions`.
    """
    with op.batch_alter_table("opa_decisions", schema=None, recreate="never") as batch_op:
        batch_op.add_column(sa.Column("nd_builtin_cache", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop the column (SQLite ≥ 3.35 drops it in place; the triggers stay)."""
    with op.batch_alter_table("opa_decisions", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("nd_builtin_cache")
