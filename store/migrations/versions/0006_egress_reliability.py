"""Egress controls, SLOs and error budgets, evidence packs (issue 7).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from collections.abc import Sequence

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Schema changes of this capability are added here by the change that builds it."""


def downgrade() -> None:
    """Reverse of upgrade()."""
