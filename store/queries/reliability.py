"""Read side for reliability: SLO coverage by the error-budget policy, incidents, postmortems."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.metrics import MetricValue, Window, metric
from store.models import Incident, Postmortem, SloSample
from store.queries.frames import frame


def slo_frame(session: Session, *, window: Window) -> pd.DataFrame:
    """Per (service, slo) over ``window``: good, total, error_ratio."""
    stmt = (
        select(
            SloSample.service, SloSample.slo, func.sum(SloSample.good), func.sum(SloSample.total)
        )
        .where(SloSample.ts >= window.start, SloSample.ts < window.end)
        .group_by(SloSample.service, SloSample.slo)
    )
    df = frame(session, stmt, ["service", "slo", "good", "total"])
    df["error_ratio"] = (1 - df["good"] / df["total"].where(df["total"] > 0)).astype(float)
    return df


def incidents_frame(session: Session, *, window: Window) -> pd.DataFrame:
    """Incidents overlapping ``window`` with their postmortem count.

    Columns: incident_key, title, severity, service, started_at, resolved_at, postmortems.
    """
    pms = (
        select(Postmortem.incident_key, func.count().label("n"))
        .group_by(Postmortem.incident_key)
        .subquery()
    )
    stmt = (
        select(
            Incident.incident_key,
            Incident.title,
            Incident.severity,
            Incident.service,
            Incident.started_at,
            Incident.resolved_at,
            func.coalesce(pms.c.n, 0),
        )
        .outerjoin(pms, pms.c.incident_key == Incident.incident_key)
        .where(Incident.started_at < window.end)
        .where((Incident.resolved_at.is_(None)) | (Incident.resolved_at >= window.start))
        .order_by(Incident.started_at)
    )
    cols = [
        "incident_key",
        "title",
        "severity",
        "service",
        "started_at",
        "resolved_at",
        "postmortems",
    ]
    return frame(session, stmt, cols)


@metric(
    "slo.error_budget_policy_coverage",
    unit="ratio",
    page="/reliability",
    definition="""Share of services reporting SLO samples in the window that are covered by the
    documented error-budget policy (`policy_services`); a policy nobody's data reaches is not
    "in use".""",
)
def _policy_coverage(
    session: Session, window: Window, agg: str, params: dict[str, Any]
) -> MetricValue:
    services = set(slo_frame(session, window=window)["service"])
    if not services:
        return MetricValue(None, 0, "no SLO samples")
    covered = services & set(params.get("policy_services") or [])
    missing = sorted(services - covered)
    detail = f"{len(covered)} of {len(services)} services" + (
        f"; not covered: {', '.join(missing)}" if missing else ""
    )
    return MetricValue(len(covered) / len(services), len(services), detail)


@metric(
    "incidents.postmortems_generated",
    unit="count",
    page="/reliability",
    definition="""Postmortems generated (by the postmortem bot or the console) in the window.""",
)
def _postmortems(session: Session, window: Window, agg: str, params: dict[str, Any]) -> MetricValue:
    count = (
        session.scalar(
            select(func.count()).where(
                Postmortem.generated_at >= window.start, Postmortem.generated_at < window.end
            )
        )
        or 0
    )
    incidents = (
        session.scalar(
            select(func.count()).where(
                Incident.started_at >= window.start, Incident.started_at < window.end
            )
        )
        or 0
    )
    if not count and not incidents:
        return MetricValue(None, 0, "no incidents and no postmortems recorded")
    return MetricValue(
        float(count), int(count) + int(incidents), f"{count} postmortem(s), {incidents} incident(s)"
    )
