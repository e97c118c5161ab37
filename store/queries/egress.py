"""Read side for egress controls: token + watermark coverage, download 5xx while limiting."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from store.metrics import MetricValue, Window, metric
from store.models import ExportEvent
from store.queries.frames import frame


def export_summary_frame(session: Session, *, window: Window) -> pd.DataFrame:
    """Per tenant: events, covered (valid token + watermark), 429s, 5xx, 503s, bytes."""
    covered = case(
        ((ExportEvent.token_state == "valid") & ExportEvent.watermarked.is_(True), 1),  # noqa: S105
        else_=0,
    )
    stmt = (
        select(
            ExportEvent.tenant,
            func.count(),
            func.sum(covered),
            func.sum(case((ExportEvent.status == 429, 1), else_=0)),
            func.sum(case((ExportEvent.status >= 500, 1), else_=0)),
            func.sum(case((ExportEvent.status == 503, 1), else_=0)),
            func.sum(ExportEvent.bytes),
        )
        .where(ExportEvent.ts >= window.start, ExportEvent.ts < window.end)
        .group_by(ExportEvent.tenant)
    )
    return frame(session, stmt, ["tenant", "events", "covered", "r429", "r5xx", "r503", "bytes"])


@metric(
    "exports.token_watermark_coverage",
    unit="ratio",
    page="/egress",
    definition="""Share of export events in the window that carried a valid token and the
    watermark headers. Missing, invalid and expired tokens count against it.""",
)
def _coverage(session: Session, window: Window, agg: str, params: dict[str, Any]) -> MetricValue:
    df = export_summary_frame(session, window=window)
    events = int(df["events"].sum())
    if not events:
        return MetricValue(None, 0, "no export events")
    covered = int(df["covered"].sum())
    return MetricValue(covered / events, events, f"{events - covered} of {events} uncovered")


@metric(
    "exports.download_5xx",
    unit="count",
    page="/egress",
    definition="""Export downloads answered with a 5xx in the window (rate limiting must answer
    429, never 5xx). A limiter answering 503 is counted here and flagged.""",
)
def _download_5xx(
    session: Session, window: Window, agg: str, params: dict[str, Any]
) -> MetricValue:
    df = export_summary_frame(session, window=window)
    events = int(df["events"].sum())
    if not events:
        return MetricValue(None, 0, "no export events")
    r5xx, r503, r429 = int(df["r5xx"].sum()), int(df["r503"].sum()), int(df["r429"].sum())
    detail = f"{r429} rate-limited (429), {r5xx} 5xx"
    if r503:
        detail += f"; {r503} answered 503 — a limiter answering 503 instead of 429?"
    return MetricValue(float(r5xx), events, detail)
