"""Egress controls, SLOs and error budgets, evidence packs (issue 7).

Adds `evidence_packs` (packs built per sprint; their downloads are `export_events`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create `evidence_packs`."""
    op.create_table(
        "evidence_packs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("pack_id", sa.String(length=100), nullable=False),
        sa.Column("sprint", sa.String(length=100), nullable=False),
        sa.Column("built_at", store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("built_by", sa.String(length=200), nullable=False),
        sa.Column("snapshot_sha256", sa.String(length=64), nullable=False),
        sa.Column("snapshot_path", sa.String(length=1000), nullable=False),
        sa.Column("key_fingerprint", sa.String(length=100), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence_packs")),
        sa.UniqueConstraint("pack_id", name=op.f("uq_evidence_packs_pack_id")),
    )
    with op.batch_alter_table("evidence_packs", schema=None) as batch_op:
        batch_op.create_index("ix_evidence_packs_built_at", ["built_at"], unique=False)


def downgrade() -> None:
    """Drop `evidence_packs`."""
    with op.batch_alter_table("evidence_packs", schema=None) as batch_op:
        batch_op.drop_index("ix_evidence_packs_built_at")
    op.drop_table("evidence_packs")
