"""Reliability (issue 13): Alertmanager alerts become incidents.

Adds `incident_alerts` (one row per alert episode, unique on `fingerprint` + `starts_at`, so a
re-delivered webhook changes nothing) and `incidents.alert_group` (Alertmanager's `groupKey`
of incidents opened by alerts: a firing alert joins the open incident of its group).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.types

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add `incidents.alert_group` and create `incident_alerts`."""
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("alert_group", sa.String(length=500), nullable=True))
    op.create_table(
        "incident_alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("starts_at", store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("alertname", sa.String(length=200), nullable=False),
        sa.Column("service", sa.String(length=200), nullable=True),
        sa.Column("severity", sa.String(length=50), nullable=True),
        sa.Column("incident_key", sa.String(length=100), nullable=False),
        sa.Column("group_key", sa.String(length=500), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.Column("generator_url", sa.String(length=1000), nullable=True),
        sa.Column("received_at", store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_key"],
            ["incidents.incident_key"],
            name=op.f("fk_incident_alerts_incident_key_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_alerts")),
        sa.UniqueConstraint(
            "fingerprint", "starts_at", name=op.f("uq_incident_alerts_fingerprint_starts_at")
        ),
    )
    with op.batch_alter_table("incident_alerts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_incident_alerts_incident_key"), ["incident_key"], unique=False
        )


def downgrade() -> None:
    """Drop `incident_alerts` and `incidents.alert_group`."""
    with op.batch_alter_table("incident_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_alerts_incident_key"))
    op.drop_table("incident_alerts")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_column("alert_group")
