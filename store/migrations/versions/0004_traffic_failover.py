"""Traffic and failover: collectors, live failover runs (issue 5).

Adds `traffic_rollups`: hourly sums of `traffic_samples` per region and ingress, kept in step
by the traffic loader so the Traffic page never scans months of 15-second samples.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create `traffic_rollups` and backfill it from any samples already stored."""
    op.create_table(
        "traffic_rollups",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("bucket", store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("region", sa.String(length=50), nullable=False),
        sa.Column("ingress", sa.String(length=200), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("requests_sum", sa.Float(), nullable=False),
        sa.Column("r429_sum", sa.Float(), nullable=False),
        sa.Column("r5xx_sum", sa.Float(), nullable=False),
        sa.Column("r503_sum", sa.Float(), nullable=False),
        sa.Column("cache_hit_sum", sa.Float(), nullable=False),
        sa.Column("cache_samples", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_traffic_rollups")),
        sa.UniqueConstraint(
            "bucket", "region", "ingress", name=op.f("uq_traffic_rollups_bucket_region_ingress")
        ),
    )
    with op.batch_alter_table("traffic_rollups", schema=None) as batch_op:
        batch_op.create_index(
            "ix_traffic_rollups_region_bucket", ["region", "bucket"], unique=False
        )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bucket = "date_trunc('hour', ts)"
    else:
        bucket = "strftime('%Y-%m-%d %H:00:00.000000', ts)"
    op.execute(
        f"""
        INSERT INTO traffic_rollups (bucket, region, ingress, samples, requests_sum, r429_sum,
            r5xx_sum, r503_sum, cache_hit_sum, cache_samples)
        SELECT {bucket}, region, ingress, count(*), sum(requests_per_s), sum(rate_429_per_s),
            sum(rate_5xx_per_s), sum(rate_503_per_s), coalesce(sum(cache_hit_ratio), 0),
            count(cache_hit_ratio)
        FROM traffic_samples GROUP BY {bucket}, region, ingress
        """
    )


def downgrade() -> None:
    """Drop `traffic_rollups`."""
    with op.batch_alter_table("traffic_rollups", schema=None) as batch_op:
        batch_op.drop_index("ix_traffic_rollups_region_bucket")
    op.drop_table("traffic_rollups")
