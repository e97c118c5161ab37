"""Guarded actions: the tables of identity, plans, approvals and locks.

A plan row is the whole life of one proposed change (what was read, the rules, who asked, who
approved, what was applied and verified); approvals and locks are separate rows so that two people
approving or two applies racing for one target are settled by unique constraints, not by luck.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, BigId


class User(Base):
    """A local console user (local auth mode): scrypt password hash and roles."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("username"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(300))
    roles: Mapped[list[Any]] = mapped_column(default=list)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class UserSession(Base):
    """A signed-in browser session; only the SHA-256 of the cookie token is stored."""

    __tablename__ = "user_sessions"
    __table_args__ = (UniqueConstraint("token_hash"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    username: Mapped[str] = mapped_column(String(200), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class ActionPlan(Base):
    """One proposed change: before/after, every rule's verdict, and where it is in its life.

    `status`: planned | blocked | approved | applied | verified | unverified | dry-run | refused
    | failed. `state_token` fingerprints the state read at plan time; a live apply re-reads and
    refuses when it differs.
    """

    __tablename__ = "action_plans"
    __table_args__ = (
        UniqueConstraint("plan_id"),
        Index("ix_action_plans_requested_at", "requested_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    plan_id: Mapped[str] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(500))
    environment: Mapped[str] = mapped_column(String(50))
    requested_by: Mapped[str] = mapped_column(String(200))
    requested_at: Mapped[datetime]
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    before: Mapped[dict[str, Any]] = mapped_column(default=dict)
    after: Mapped[dict[str, Any]] = mapped_column(default=dict)
    rules: Mapped[list[Any]] = mapped_column(default=list)
    preview: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state_token: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text, default="")
    rollback_of: Mapped[str | None] = mapped_column(String(40))
    applied_by: Mapped[str | None] = mapped_column(String(200))
    applied_at: Mapped[datetime | None]
    live: Mapped[bool] = mapped_column(Boolean, default=False)
    overrides: Mapped[list[Any]] = mapped_column(default=list)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    verify_deadline: Mapped[datetime | None]


class ActionApproval(Base):
    """One person's approval of a plan; it stops counting at `expires_at`."""

    __tablename__ = "action_approvals"
    __table_args__ = (UniqueConstraint("plan_id", "approver"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    plan_id: Mapped[str] = mapped_column(String(40), index=True)
    approver: Mapped[str] = mapped_column(String(200))
    approved_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class ActionLock(Base):
    """The one change in flight for a target; the unique target makes a second apply fail."""

    __tablename__ = "action_locks"
    __table_args__ = (UniqueConstraint("target"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    target: Mapped[str] = mapped_column(String(500))
    plan_id: Mapped[str] = mapped_column(String(40))
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]
