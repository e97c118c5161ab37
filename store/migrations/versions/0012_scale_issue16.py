"""Schema for scale issue16: leader leases, daily decision rollups, day-partitioned samples.

On PostgreSQL `traffic_samples` becomes a table partitioned by range of `ts` (declarative
partitioning) with a DEFAULT partition; the maintenance job (`quarterdeck maintain`, see
store/retention.py) splits it into day partitions and drops whole days past retention. The
natural key (ts, region, ingress) already contains the partition key, so `ON CONFLICT` keeps
working unchanged. SQLite keeps a plain table and retention deletes in batches.

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

_TO_PARTITIONED = [
    "ALTER TABLE traffic_samples RENAME TO traffic_samples_unpartitioned",
    "ALTER TABLE traffic_samples_unpartitioned RENAME CONSTRAINT pk_traffic_samples TO pk_traffic_samples_unpartitioned",
    "ALTER TABLE traffic_samples_unpartitioned RENAME CONSTRAINT uq_traffic_samples_ts_region_ingress TO uq_traffic_samples_unpartitioned_key",
    "ALTER INDEX ix_traffic_samples_region_ts RENAME TO ix_traffic_samples_unpartitioned_region_ts",
    "CREATE TABLE traffic_samples (LIKE traffic_samples_unpartitioned INCLUDING DEFAULTS) PARTITION BY RANGE (ts)",
    "ALTER TABLE traffic_samples ADD CONSTRAINT pk_traffic_samples PRIMARY KEY (id, ts)",
    "ALTER TABLE traffic_samples ADD CONSTRAINT uq_traffic_samples_ts_region_ingress UNIQUE (ts, region, ingress)",
    "CREATE INDEX ix_traffic_samples_region_ts ON traffic_samples (region, ts)",
    "CREATE TABLE traffic_samples_default PARTITION OF traffic_samples DEFAULT",
    "INSERT INTO traffic_samples SELECT * FROM traffic_samples_unpartitioned",
    "ALTER SEQUENCE traffic_samples_id_seq OWNED BY traffic_samples.id",
    "DROP TABLE traffic_samples_unpartitioned",
]

_TO_PLAIN = [
    "ALTER TABLE traffic_samples RENAME TO traffic_samples_partitioned",
    "ALTER TABLE traffic_samples_partitioned RENAME CONSTRAINT pk_traffic_samples TO pk_traffic_samples_partitioned",
    "ALTER TABLE traffic_samples_partitioned RENAME CONSTRAINT uq_traffic_samples_ts_region_ingress TO uq_traffic_samples_partitioned_key",
    "ALTER INDEX ix_traffic_samples_region_ts RENAME TO ix_traffic_samples_partitioned_region_ts",
    "CREATE TABLE traffic_samples (LIKE traffic_samples_partitioned INCLUDING DEFAULTS)",
    "ALTER TABLE traffic_samples ADD CONSTRAINT pk_traffic_samples PRIMARY KEY (id)",
    "ALTER TABLE traffic_samples ADD CONSTRAINT uq_traffic_samples_ts_region_ingress UNIQUE (ts, region, ingress)",
    "CREATE INDEX ix_traffic_samples_region_ts ON traffic_samples (region, ts)",
    "INSERT INTO traffic_samples SELECT * FROM traffic_samples_partitioned",
    "ALTER SEQUENCE traffic_samples_id_seq OWNED BY traffic_samples.id",
    "DROP TABLE traffic_samples_partitioned CASCADE",
]


def upgrade() -> None:
    """Add `leases` and `opa_decision_daily`; partition `traffic_samples` on PostgreSQL."""
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
    if op.get_bind().dialect.name == "postgresql":
        for statement in _TO_PARTITIONED:
            op.execute(statement)


def downgrade() -> None:
    """Undo :func:`upgrade` (the day partitions' rows go back into one plain table)."""
    if op.get_bind().dialect.name == "postgresql":
        for statement in _TO_PLAIN:
            op.execute(statement)
    with op.batch_alter_table("opa_decision_daily", schema=None) as batch_op:
        batch_op.drop_index("ix_opa_decision_daily_path_day")
    op.drop_table("opa_decision_daily")
    op.drop_table("leases")
