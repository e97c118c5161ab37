"""OPA fidelity (issue 11): status reports keep OPA's process id and decision-log state.

Adds to `opa_status_reports`: `process_id` (`labels.id`, a new UUID every time OPA starts;
`instance_id` is now the configured identity label) and `decision_logs` (the decision_logs
plugin state, its error code/message and the drop counters of the report).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add `process_id` and `decision_logs` to `opa_status_reports`."""
    with op.batch_alter_table("opa_status_reports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("process_id", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("decision_logs", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop the two columns."""
    with op.batch_alter_table("opa_status_reports", schema=None) as batch_op:
        batch_op.drop_column("decision_logs")
        batch_op.drop_column("process_id")
