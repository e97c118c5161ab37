"""Schema for policy decisions issue11 (one migration per capability, linear chain).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """No change yet: the capability's engineer adds its tables and columns here."""


def downgrade() -> None:
    """Undo :func:`upgrade`."""
