"""Policy as code: decision search, bundle registry, pins and drift (issue 4).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from collections.abc import Sequence

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Schema changes of this capability are added here by the change that builds it."""


def downgrade() -> None:
    """Reverse of upgrade()."""
