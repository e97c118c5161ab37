"""Guarded actions: users, sessions, approvals, locks, audit chain (issue 6).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from collections.abc import Sequence

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Schema changes of this capability are added here by the change that builds it."""


def downgrade() -> None:
    """Reverse of upgrade()."""
