"""CI velocity: GitHub poller cursors, job metrics, flaky quarantine (issue 3).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, store.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Add jobs, webhook deliveries, poller cursors and the flaky-test quarantine."""
    op.create_table(
        "ci_jobs",
        sa.Column("id", _ID, nullable=False),
        sa.Column("repo", sa.String(length=200), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("run_attempt", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("head_sha", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("conclusion", sa.String(length=30), nullable=True),
        _ts("created_at", True),
        _ts("started_at", True),
        _ts("completed_at", True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ci_jobs")),
        sa.UniqueConstraint("repo", "job_id", name=op.f("uq_ci_jobs_repo_job_id")),
    )
    with op.batch_alter_table("ci_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_ci_jobs_repo_run_id", ["repo", "run_id"], unique=False)

    op.create_table(
        "github_deliveries",
        sa.Column("id", _ID, nullable=False),
        sa.Column("delivery_id", sa.String(length=100), nullable=False),
        sa.Column("event", sa.String(length=50), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        _ts("received_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_github_deliveries")),
        sa.UniqueConstraint("delivery_id", name=op.f("uq_github_deliveries_delivery_id")),
    )
    with op.batch_alter_table("github_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_github_deliveries_received_at"), ["received_at"], unique=False
        )

    op.create_table(
        "github_cursors",
        sa.Column("id", _ID, nullable=False),
        sa.Column("repo", sa.String(length=200), nullable=False),
        sa.Column("endpoint", sa.String(length=50), nullable=False),
        _ts("high_water", True),
        _ts("pass_high_water", True),
        sa.Column("next_url", sa.String(length=2000), nullable=True),
        sa.Column("etag", sa.String(length=200), nullable=True),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_github_cursors")),
        sa.UniqueConstraint("repo", "endpoint", name=op.f("uq_github_cursors_repo_endpoint")),
    )

    op.create_table(
        "ci_quarantined_tests",
        sa.Column("id", _ID, nullable=False),
        sa.Column("repo", sa.String(length=200), nullable=False),
        sa.Column("test_id", sa.String(length=500), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=True),
        _ts("first_flaked_at"),
        _ts("last_flaked_at"),
        sa.Column("last_sha", sa.String(length=64), nullable=False),
        _ts("expires_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ci_quarantined_tests")),
        sa.UniqueConstraint("repo", "test_id", name=op.f("uq_ci_quarantined_tests_repo_test_id")),
    )

    with op.batch_alter_table("ci_job_metrics", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ci_job_metrics_repo_finished_at", ["repo", "finished_at"], unique=False
        )
    with op.batch_alter_table("ci_runs", schema=None) as batch_op:
        batch_op.create_index("ix_ci_runs_repo_created_at", ["repo", "created_at"], unique=False)
    with op.batch_alter_table("deployment_statuses", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deployment_statuses_repo_created_at", ["repo", "created_at"], unique=False
        )
    with op.batch_alter_table("ci_test_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=200), nullable=True))


def downgrade() -> None:
    """Drop what upgrade() added."""
    with op.batch_alter_table("ci_test_results", schema=None) as batch_op:
        batch_op.drop_column("owner")
    with op.batch_alter_table("ci_job_metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_ci_job_metrics_repo_finished_at")
    with op.batch_alter_table("deployment_statuses", schema=None) as batch_op:
        batch_op.drop_index("ix_deployment_statuses_repo_created_at")
    with op.batch_alter_table("ci_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_ci_runs_repo_created_at")
    op.drop_table("ci_quarantined_tests")
    op.drop_table("github_cursors")
    with op.batch_alter_table("github_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_github_deliveries_received_at"))
    op.drop_table("github_deliveries")
    with op.batch_alter_table("ci_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_ci_jobs_repo_run_id")
    op.drop_table("ci_jobs")
