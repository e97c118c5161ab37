"""Guarded actions: users, sessions, approvals, locks, audit chain (issue 6).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _at(name: str, *, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, store.types.UTCDateTime(timezone=True), nullable=nullable)


# The audit is append-only in the database too: UPDATE, DELETE (and on PostgreSQL TRUNCATE) of
# action_audit fail. Someone with DDL rights can drop the triggers; the hash chain still shows it.
_SQLITE_TRIGGERS = [
    "CREATE TRIGGER action_audit_no_update BEFORE UPDATE ON action_audit "
    "BEGIN SELECT RAISE(ABORT, 'action_audit is append-only'); END",
    "CREATE TRIGGER action_audit_no_delete BEFORE DELETE ON action_audit "
    "BEGIN SELECT RAISE(ABORT, 'action_audit is append-only'); END",
]
_PG_TRIGGERS = [
    "CREATE FUNCTION action_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'action_audit is append-only'; END $$",
    "CREATE TRIGGER action_audit_no_change BEFORE UPDATE OR DELETE ON action_audit "
    "FOR EACH ROW EXECUTE FUNCTION action_audit_append_only()",
    "CREATE TRIGGER action_audit_no_truncate BEFORE TRUNCATE ON action_audit "
    "FOR EACH STATEMENT EXECUTE FUNCTION action_audit_append_only()",
]


def _append_only_audit() -> None:
    dialect = op.get_bind().dialect.name
    for statement in _PG_TRIGGERS if dialect == "postgresql" else _SQLITE_TRIGGERS:
        op.execute(statement)


def upgrade() -> None:
    """Create the identity, plan, approval and lock tables; make the audit append-only."""
    _append_only_audit()
    op.create_table(
        "users",
        sa.Column("id", _ID, nullable=False),
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=300), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        _at("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "user_sessions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=200), nullable=False),
        _at("created_at"),
        _at("expires_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_user_sessions_token_hash")),
    )
    op.create_index(op.f("ix_user_sessions_username"), "user_sessions", ["username"], unique=False)
    op.create_table(
        "action_plans",
        sa.Column("id", _ID, nullable=False),
        sa.Column("plan_id", sa.String(length=40), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("environment", sa.String(length=50), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        _at("requested_at"),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("before", sa.JSON(), nullable=False),
        sa.Column("after", sa.JSON(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("preview", sa.JSON(), nullable=False),
        sa.Column("state_token", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("rollback_of", sa.String(length=40), nullable=True),
        sa.Column("applied_by", sa.String(length=200), nullable=True),
        _at("applied_at", nullable=True),
        sa.Column("live", sa.Boolean(), nullable=False),
        sa.Column("overrides", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        _at("verify_deadline", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_action_plans")),
        sa.UniqueConstraint("plan_id", name=op.f("uq_action_plans_plan_id")),
    )
    op.create_index("ix_action_plans_requested_at", "action_plans", ["requested_at"], unique=False)
    op.create_table(
        "action_approvals",
        sa.Column("id", _ID, nullable=False),
        sa.Column("plan_id", sa.String(length=40), nullable=False),
        sa.Column("approver", sa.String(length=200), nullable=False),
        _at("approved_at"),
        _at("expires_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_action_approvals")),
        sa.UniqueConstraint(
            "plan_id", "approver", name=op.f("uq_action_approvals_plan_id_approver")
        ),
    )
    op.create_index(
        op.f("ix_action_approvals_plan_id"), "action_approvals", ["plan_id"], unique=False
    )
    op.create_table(
        "action_locks",
        sa.Column("id", _ID, nullable=False),
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("plan_id", sa.String(length=40), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        _at("acquired_at"),
        _at("expires_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_action_locks")),
        sa.UniqueConstraint("target", name=op.f("uq_action_locks_target")),
    )


def downgrade() -> None:
    """Drop the tables upgrade() created and the audit's triggers."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER action_audit_no_truncate ON action_audit")
        op.execute("DROP TRIGGER action_audit_no_change ON action_audit")
        op.execute("DROP FUNCTION action_audit_append_only()")
    else:
        op.execute("DROP TRIGGER action_audit_no_update")
        op.execute("DROP TRIGGER action_audit_no_delete")
    op.drop_table("action_locks")
    op.drop_index(op.f("ix_action_approvals_plan_id"), table_name="action_approvals")
    op.drop_table("action_approvals")
    op.drop_index("ix_action_plans_requested_at", table_name="action_plans")
    op.drop_table("action_plans")
    op.drop_index(op.f("ix_user_sessions_username"), table_name="user_sessions")
    op.drop_table("user_sessions")
    op.drop_table("users")
