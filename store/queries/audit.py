"""Read side for the action audit: approvals counted for promotion gates."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
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
    stmt = select(func.count()).where(
        ActionAudit.outcome == "approved",
        ActionAudit.at >= window.start,
        ActionAudit.at < window.end,
    )
    if params.get("environment"):
        stmt = stmt.where(ActionAudit.environment == params["environment"])
    count = int(session.scalar(stmt) or 0)
    return MetricValue(float(count), count, f"{count} approval(s) recorded")
