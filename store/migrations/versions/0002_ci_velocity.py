"""CI velocity: GitHub poller cursors, job metrics, flaky quarantine (issue 3).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Schema changes of this capability are added here by the change that builds it."""


def downgrade() -> None:
    """Reverse of upgrade()."""
