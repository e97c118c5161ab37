"""Read side for guarded actions: recent plans, one plan, the newest audit rows (for the pages)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import ActionAudit
from store.models.actions import ActionPlan


def recent_plans(session: Session, *, limit: int) -> Sequence[ActionPlan]:
    """The newest ``limit`` plans, newest first."""
    return session.scalars(
        select(ActionPlan).order_by(ActionPlan.requested_at.desc()).limit(limit)
    ).all()


def plan_by_id(session: Session, plan_id: str) -> ActionPlan | None:
    """One plan by its id, or None."""
    return session.scalar(select(ActionPlan).where(ActionPlan.plan_id == plan_id))


def recent_audit(session: Session, *, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` audit rows as plain dicts (`seq`, `at` ISO-8601 UTC, actor, action,
    target, environment, outcome, detail), newest first."""
    return [
        {
            "seq": r.seq,
            "at": r.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "actor": r.actor,
            "action": r.action,
            "target": r.target,
            "environment": r.environment,
            "outcome": r.outcome,
            "detail": r.detail,
        }
        for r in session.scalars(select(ActionAudit).order_by(ActionAudit.seq.desc()).limit(limit))
    ]
