"""Read side for the action audit: approvals counted for promotion gates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from store.measures import MetricValue, Window
from store.models import ActionAudit
from store.queries.daily import grouped, window_index, within


def _approvals(session: Session, window: Window, agg: str, params: dict[str, Any]) -> MetricValue:
    approved = func.coalesce(func.sum(case((ActionAudit.outcome == "approved", 1), else_=0)), 0)
    stmt = select(func.count(), approved).where(
        ActionAudit.at >= window.start, ActionAudit.at < window.end
    )
    env = params.get("environment")
    if env:
        stmt = stmt.where(ActionAudit.environment == env)
    rows, count = session.execute(stmt).one()
    return _approvals_value(int(rows), int(count), env)


def _approvals_value(rows: int, count: int, env: str | None) -> MetricValue:
    if not rows:
        where = f" for {env}" if env else ""
        return MetricValue(None, 0, f"no guarded action recorded{where} in the window")
    return MetricValue(float(count), rows, f"{count} approval(s) in {rows} audit row(s)")


def _approvals_daily(
    session: Session, windows: Sequence[Window], agg: str, params: dict[str, Any]
) -> list[MetricValue]:
    """``actions.approvals`` for consecutive windows in one grouped statement."""
    approved = func.coalesce(func.sum(case((ActionAudit.outcome == "approved", 1), else_=0)), 0)
    index = window_index(ActionAudit.at, windows)
    stmt = select(index, func.count(), approved).where(within(ActionAudit.at, windows))
    env = params.get("environment")
    if env:
        stmt = stmt.where(ActionAudit.environment == env)
    found = grouped(session, stmt.group_by(index), windows, ["rows", "count"])
    return [
        _approvals_value(0, 0, env)
        if r is None
        else _approvals_value(int(r["rows"]), int(r["count"]), env)
        for r in found
    ]
