"""Read side for the action audit: approvals counted for promotion gates."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from store.metrics import MetricValue, Window, metric
from store.models import ActionAudit


@metric(
    "actions.approvals",
    unit="count",
    page="/audit",
    definition="""Approvals recorded in the action audit for the environment in the window
    (two-person rule: the approver is never the requester).""",
)
def _approvals(session: Session, window: Window, agg: str, params: dict[str, Any]) -> MetricValue:
    approved = func.coalesce(func.sum(case((ActionAudit.outcome == "approved", 1), else_=0)), 0)
    stmt = select(func.count(), approved).where(
        ActionAudit.at >= window.start, ActionAudit.at < window.end
    )
    env = params.get("environment")
    if env:
        stmt = stmt.where(ActionAudit.environment == env)
    rows, count = session.execute(stmt).one()
    if not rows:
        where = f" for {env}" if env else ""
        return MetricValue(None, 0, f"no guarded action recorded{where} in the window")
    return MetricValue(float(count), int(rows), f"{count} approval(s) in {rows} audit row(s)")
