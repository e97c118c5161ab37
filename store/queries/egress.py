"""Read side for egress controls: token + watermark coverage, download 5xx while limiting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from store.measures import MetricValue, Window
from store.models import ExportEvent
from store.models.egress import EvidencePack
from store.queries.daily import grouped, window_index, within
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


def _summary_daily(session: Session, windows: Sequence[Window]) -> list[pd.DataFrame]:
    """One-row export summaries (events, covered, r429, r5xx, r503) per consecutive window."""
    covered = case(
        ((ExportEvent.token_state == "valid") & ExportEvent.watermarked.is_(True), 1),  # noqa: S105
        else_=0,
    )
    index = window_index(ExportEvent.ts, windows)
    stmt = (
        select(
            index,
            func.count(),
            func.sum(covered),
            func.sum(case((ExportEvent.status == 429, 1), else_=0)),
            func.sum(case((ExportEvent.status >= 500, 1), else_=0)),
            func.sum(case((ExportEvent.status == 503, 1), else_=0)),
        )
        .where(within(ExportEvent.ts, windows))
        .group_by(index)
    )
    columns = ["events", "covered", "r429", "r5xx", "r503"]
    return [
        pd.DataFrame([] if r is None else [tuple(r[c] for c in columns)], columns=columns)
        for r in grouped(session, stmt, windows, columns)
    ]


def _coverage(session: Session, window: Window, agg: str, params: dict[str, Any]) -> MetricValue:
    return _coverage_value(export_summary_frame(session, window=window))


def _coverage_daily(
    session: Session, windows: Sequence[Window], agg: str, params: dict[str, Any]
) -> list[MetricValue]:
    return [_coverage_value(df) for df in _summary_daily(session, windows)]


def _coverage_value(df: pd.DataFrame) -> MetricValue:
    events = int(df["events"].sum())
    if not events:
        return MetricValue(None, 0, "no export events")
    covered = int(df["covered"].sum())
    return MetricValue(covered / events, events, f"{events - covered} of {events} uncovered")


def _download_5xx(
    session: Session, window: Window, agg: str, params: dict[str, Any]
) -> MetricValue:
    return _download_5xx_value(export_summary_frame(session, window=window))


def _download_5xx_daily(
    session: Session, windows: Sequence[Window], agg: str, params: dict[str, Any]
) -> list[MetricValue]:
    return [_download_5xx_value(df) for df in _summary_daily(session, windows)]


def _download_5xx_value(df: pd.DataFrame) -> MetricValue:
    events = int(df["events"].sum())
    if not events:
        return MetricValue(None, 0, "no export events")
    r5xx, r503, r429 = int(df["r5xx"].sum()), int(df["r503"].sum()), int(df["r429"].sum())
    detail = f"{r429} rate-limited (429), {r5xx} 5xx"
    if r503:
        detail += f"; {r503} answered 503 — a limiter answering 503 instead of 429?"
    return MetricValue(float(r5xx), events, detail)


def _day(session: Session, column: Any) -> Any:
    """A per-day bucket of a timestamp column that both dialects group by."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)


def export_daily_frame(session: Session, *, window: Window) -> pd.DataFrame:
    """Per day (UTC) and tenant: events, r2xx, r429, r5xx. Columns: day, tenant, events, …"""
    day = _day(session, ExportEvent.ts).label("day")
    stmt = (
        select(
            day,
            ExportEvent.tenant,
            func.count(),
            func.sum(case((ExportEvent.status < 300, 1), else_=0)),
            func.sum(case((ExportEvent.status == 429, 1), else_=0)),
            func.sum(case((ExportEvent.status >= 500, 1), else_=0)),
        )
        .where(ExportEvent.ts >= window.start, ExportEvent.ts < window.end)
        .group_by(day, ExportEvent.tenant)
        .order_by(day, ExportEvent.tenant)
    )
    return frame(session, stmt, ["day", "tenant", "events", "r2xx", "r429", "r5xx"])


def uncovered_frame(session: Session, *, window: Window, limit: int = 20) -> pd.DataFrame:
    """Routes whose events lacked a valid token or the watermark, most first.

    Columns: route, token_state, watermarked, events, last_seen.
    """
    covered = (ExportEvent.token_state == "valid") & ExportEvent.watermarked.is_(True)  # noqa: S105
    stmt = (
        select(
            ExportEvent.route,
            ExportEvent.token_state,
            ExportEvent.watermarked,
            func.count().label("n"),
            func.max(ExportEvent.ts),
        )
        .where(ExportEvent.ts >= window.start, ExportEvent.ts < window.end, ~covered)
        .group_by(ExportEvent.route, ExportEvent.token_state, ExportEvent.watermarked)
        .order_by(func.count().desc(), ExportEvent.route)
        .limit(limit)
    )
    return frame(session, stmt, ["route", "token_state", "watermarked", "events", "last_seen"])


def evidence_packs_frame(session: Session, *, limit: int = 100) -> pd.DataFrame:
    """Evidence packs built, newest first, with their downloads.

    Columns: pack_id, sprint, built_at, built_by, key_fingerprint, downloads (successful),
    refused (4xx answers), downloaded_by (comma-separated users of successful downloads).
    """
    packs = frame(
        session,
        select(
            EvidencePack.pack_id,
            EvidencePack.sprint,
            EvidencePack.built_at,
            EvidencePack.built_by,
            EvidencePack.key_fingerprint,
        )
        .order_by(EvidencePack.built_at.desc(), EvidencePack.id.desc())
        .limit(limit),
        ["pack_id", "sprint", "built_at", "built_by", "key_fingerprint"],
    )
    routes = {f"/evidence/packs/{p}/download": p for p in packs["pack_id"]}
    stats = frame(
        session,
        select(ExportEvent.route, ExportEvent.user, ExportEvent.status, func.count())
        .where(ExportEvent.route.in_(list(routes)))
        .group_by(ExportEvent.route, ExportEvent.user, ExportEvent.status),
        ["route", "user", "status", "n"],
    )
    ok = stats[stats["status"] == 200]
    downloads = {routes[str(r)]: int(n) for r, n in ok.groupby("route")["n"].sum().items()}
    refused = {
        routes[str(r)]: int(n)
        for r, n in stats[stats["status"] >= 400].groupby("route")["n"].sum().items()
    }
    users = {
        routes[str(r)]: ", ".join(sorted({str(u) for u in g["user"] if u}))
        for r, g in ok.groupby("route")
    }
    packs["downloads"] = [downloads.get(p, 0) for p in packs["pack_id"]]
    packs["refused"] = [refused.get(p, 0) for p in packs["pack_id"]]
    packs["downloaded_by"] = [users.get(p, "") for p in packs["pack_id"]]
    return packs


def evidence_downloads_frame(session: Session, *, limit: int = 50) -> pd.DataFrame:
    """The latest evidence download attempts. Columns: ts, route, user, status, export_id, bytes."""
    stmt = (
        select(
            ExportEvent.ts,
            ExportEvent.route,
            ExportEvent.user,
            ExportEvent.status,
            ExportEvent.export_id,
            ExportEvent.bytes,
        )
        .where(ExportEvent.route.like("/evidence/packs/%"))
        .order_by(ExportEvent.ts.desc())
        .limit(limit)
    )
    return frame(session, stmt, ["ts", "route", "user", "status", "export_id", "bytes"])
