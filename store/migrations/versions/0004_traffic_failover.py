"""Traffic and failover: collectors, live failover runs (issue 5).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from collections.abc import Sequence

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Schema changes of this capability are added here by the change that builds it."""


def downgrade() -> None:
    """Reverse of upgrade()."""
