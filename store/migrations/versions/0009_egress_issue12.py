"""Egress behind a real NGINX (issue 12): who answered, why refused, the proxy's side.

Adds to `export_events`: `answered_by` (application | limiter | proxy), `reason` (why a refused
attempt was refused), `in_proxy_log` (the proxy's access log carried the request) and
`proxy_key` (the key of a request-id-less log line merged into an application event, so a
re-import adds nothing). Existing rows are application events not yet seen in a proxy log.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the four `export_events` columns."""
    with op.batch_alter_table("export_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "answered_by", sa.String(length=20), server_default="application", nullable=False
            )
        )
        batch_op.add_column(sa.Column("reason", sa.String(length=40), nullable=True))
        batch_op.add_column(
            sa.Column("in_proxy_log", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("proxy_key", sa.String(length=100), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_export_events_proxy_key"), ["proxy_key"])


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("export_events", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_export_events_proxy_key"), type_="unique")
        batch_op.drop_column("proxy_key")
        batch_op.drop_column("in_proxy_log")
        batch_op.drop_column("reason")
        batch_op.drop_column("answered_by")
