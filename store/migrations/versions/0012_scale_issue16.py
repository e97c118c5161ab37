"""Schema for scale issue16: leader leases (`leases`) and daily decision rollups.

No table is partitioned yet: declarative partitioning of `traffic_samples`/`opa_decisions`
breaks two writers outside this capability (store.ingest.upsert's `RETURNING (xmax = 0)` is
refused on partitioned tables; collectors/opa.py's `ON CONFLICT (decision_id)` needs a unique
index a partitioned table cannot have). store/retention.py drops day partitions where a table
is partitioned and deletes in batches everywhere else (docs/scale-out.md).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from store.types import UTCDateTime

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add `leases` and `opa_decision_daily`."""
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("last_run_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "opa_decision_daily",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("day", UTCDateTime(), nullable=False),
        sa.Column("environment", sa.String(length=50), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("decisions", sa.Integer(), nullable=False),
        sa.Column("allowed", sa.Integer(), nullable=False),
        sa.Column("denied", sa.Integer(), nullable=False),
        sa.Column("undecided", sa.Integer(), nullable=False),
        sa.Column("dry_run", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_opa_decision_daily")),
        sa.UniqueConstraint(
            "day", "environment", "path", name=op.f("uq_opa_decision_daily_day_environment_path")
        ),
    )
    with op.batch_alter_table("opa_decision_daily", schema=None) as batch_op:
        batch_op.create_index("ix_opa_decision_daily_path_day", ["path", "day"], unique=False)


def downgrade() -> None:
    """Undo :func:`upgrade`."""
    with op.batch_alter_table("opa_decision_daily", schema=None) as batch_op:
        batch_op.drop_index("ix_opa_decision_daily_path_day")
    op.drop_table("opa_decision_daily")
    op.drop_table("leases")
