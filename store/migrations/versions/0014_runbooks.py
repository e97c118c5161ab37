"""Runbook runs (issue 19): one row per practice or recovery run of a runbook.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.types

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "runbook_runs",
        sa.Column("id", BigId, nullable=False),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("runbook", sa.String(100), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("environment", sa.String(50), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("plan_id", sa.String(40), nullable=True),
        sa.Column("failover_run_key", sa.String(200), nullable=True),
        sa.Column("current_step", sa.Integer(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("rollback", sa.JSON(), nullable=False),
        sa.Column("overrides", sa.JSON(), nullable=False),
        sa.Column("control", sa.String(20), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("rto_s", sa.Float(), nullable=True),
        sa.Column("rpo_s", sa.Float(), nullable=True),
        sa.Column("started_at", store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", store.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runbook_runs")),
        sa.UniqueConstraint("run_id", name=op.f("uq_runbook_runs_run_id")),
    )
    op.create_index("ix_runbook_runs_runbook_started", "runbook_runs", ["runbook", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_runbook_runs_runbook_started", table_name="runbook_runs")
    op.drop_table("runbook_runs")
