"""Read side for egress controls: coverage of served exports, refusals by reason, 5xx by who
answered (limiter or application), per tenant; the metric functions and their daily twins."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import case, func, literal, select
from sqlalchemy.orm import Session

from store.measures import MetricValue, Window
from store.models import ExportEvent
from store.models.egress import EvidencePack
from store.queries.daily import span, window_index, within
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


DEFAULT_EXPORT_ROUTES = (r"^/evidence/packs/[^/]+/download$", r"^/exports/[^/]+/download$")
"""The platform's declared export routes (a goal's ``params.routes`` overrides them)."""

REFUSAL_REASONS = {
    401: "missing_token",
    404: "not_found",
    409: "conflict",
    429: "rate_limited",
}
LIMITER_FIX = (
    "set `limit_req_status 429;` next to `limit_req` (ingress-nginx: "
    '`limit-req-status-code: "429"`) so the limiter answers 429, not 503'
)


def refusal_reason(status: int, token_state: str, answered_by: str) -> str | None:
    """Why an attempt was refused (None when it was served or failed with a 5xx).

    The limiter's refusals are `limiter` whatever their status (503 by default, 429 when set).
    """
    if answered_by == "limiter":
        return "limiter"
    if answered_by == "proxy" and status >= 400:
        return f"proxy_{status}"
    if status < 400 or status >= 500:
        return None
    if status == 401:
        return "missing_token" if token_state == "missing" else f"{token_state}_token"  # noqa: S105
    if status == 403:
        return "expired_token" if token_state == "expired" else "invalid_token"  # noqa: S105
    return REFUSAL_REASONS.get(status, f"http_{status}")


def _routes(params: dict[str, Any] | None) -> tuple[str, ...]:
    routes = (params or {}).get("routes")
    if isinstance(routes, list | tuple) and routes:
        return tuple(str(r) for r in routes)
    return DEFAULT_EXPORT_ROUTES


@dataclass
class EgressSummary:
    """The egress figures of one window, shared by `/api/egress/summary`, the page and goals.

    *Served* = a 2xx with a body. *Covered* = served on a declared route with a valid,
    in-scope token and the watermark (headers and in-file). Refused attempts are counted by
    reason, never as uncovered. `proxy_events` = events the proxy's log carried: without any,
    the limiter's side of the window is unknown.
    """

    requests: int = 0
    served: int = 0
    covered: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    status_429: int = 0
    status_5xx: dict[str, int] = field(
        default_factory=lambda: {"limiter": 0, "application": 0, "proxy": 0}
    )
    limiter_503: int = 0
    bytes: int = 0
    proxy_events: int = 0
    uncovered_routes: list[dict[str, Any]] = field(default_factory=list)
    tenants: list[dict[str, Any]] = field(default_factory=list)

    @property
    def coverage(self) -> float | None:
        return self.covered / self.served if self.served else None

    @property
    def total_5xx(self) -> int:
        return sum(self.status_5xx.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "served": self.served,
            "covered": self.covered,
            "coverage": None if self.coverage is None else round(self.coverage, 6),
            "refused": dict(sorted(self.refused.items())),
            "refused_total": sum(self.refused.values()),
            "status_429": self.status_429,
            "status_5xx": {**self.status_5xx, "total": self.total_5xx},
            "limiter_503": self.limiter_503,
            "limiter_fix": LIMITER_FIX if self.limiter_503 else None,
            "bytes": self.bytes,
            "proxy_log": {
                "events": self.proxy_events,
                "application_only": self.requests - self.proxy_events,
                "in": self.proxy_events > 0,
            },
            "uncovered_routes": self.uncovered_routes,
            "tenants": self.tenants,
        }


_DIMS = ["tenant", "answered_by", "status", "token_state", "watermarked", "reason", "logged"]


def _route_stats(session: Session, start: datetime, end: datetime) -> pd.DataFrame:
    served = case(((ExportEvent.status.between(200, 299)) & (ExportEvent.bytes > 0), 1), else_=0)
    return frame(
        session,
        select(ExportEvent.route, func.count(), func.sum(served), func.max(ExportEvent.ts))
        .where(ExportEvent.ts >= start, ExportEvent.ts < end)
        .group_by(ExportEvent.route),
        ["route", "requests", "served", "last_seen"],
    )


def _undeclared(stats: pd.DataFrame, routes: Sequence[str]) -> pd.DataFrame:
    patterns = [re.compile(r) for r in routes]
    mask = [not any(p.search(str(r)) for p in patterns) for r in stats["route"]]
    return stats[mask] if len(stats) else stats


def _dims(undeclared: list[str]) -> list[Any]:
    odd = ExportEvent.route.in_(undeclared) if undeclared else literal(False)
    served = (ExportEvent.status.between(200, 299)) & (ExportEvent.bytes > 0)
    return [
        ExportEvent.tenant,
        ExportEvent.answered_by,
        ExportEvent.status,
        ExportEvent.token_state,
        ExportEvent.watermarked,
        ExportEvent.reason,
        ExportEvent.in_proxy_log,
        case((served, 1), else_=0).label("served"),
        case((odd, 1), else_=0).label("odd"),
    ]


_COLUMNS = [*_DIMS, "served", "odd", "n", "bytes"]


def _fold(df: pd.DataFrame, uncovered: pd.DataFrame | None = None) -> EgressSummary:
    """One summary from grouped rows (columns `_COLUMNS`)."""
    out = EgressSummary()
    tenants: dict[str, dict[str, Any]] = {}
    for r in df.to_dict("records"):
        n, status = int(r["n"]), int(r["status"])
        answered = str(r["answered_by"] or "application")
        state = str(r["token_state"])
        served = bool(r["served"])
        covered = served and not r["odd"] and state == "valid" and bool(r["watermarked"])
        reason = None if served else (r["reason"] or refusal_reason(status, state, answered))
        tenant = str(r["tenant"] or "—")
        t = tenants.setdefault(
            tenant,
            {
                "tenant": tenant,
                "requests": 0,
                "served": 0,
                "covered": 0,
                "refused": 0,
                "status_429": 0,
                "rate_limited_user": 0,
                "rate_limited_tenant": 0,
                "limiter": 0,
                "status_5xx": 0,
                "bytes": 0,
            },
        )
        size = int(r["bytes"] or 0)
        out.requests += n
        out.bytes += size
        t["requests"] += n
        t["bytes"] += size
        if r["logged"]:
            out.proxy_events += n
        if served:
            out.served += n
            t["served"] += n
        if covered:
            out.covered += n
            t["covered"] += n
        if reason:
            out.refused[reason] = out.refused.get(reason, 0) + n
            t["refused"] += n
            if reason in ("rate_limited_user", "rate_limited_tenant", "limiter"):
                t[reason] += n
        if status == 429:
            out.status_429 += n
            t["status_429"] += n
        if status >= 500:
            out.status_5xx[answered] = out.status_5xx.get(answered, 0) + n
            t["status_5xx"] += n
            if answered == "limiter" and status == 503:
                out.limiter_503 += n
    for t in tenants.values():
        t["coverage"] = round(t["covered"] / t["served"], 6) if t["served"] else None
    out.tenants = sorted(tenants.values(), key=lambda t: (-t["requests"], t["tenant"]))
    if uncovered is not None and len(uncovered):
        out.uncovered_routes = [
            {
                "route": str(u["route"]),
                "requests": int(u["requests"]),
                "served": int(u["served"] or 0),
                "last_seen": pd.Timestamp(u["last_seen"]).isoformat(),
            }
            for u in uncovered.sort_values(["served", "requests"], ascending=False).to_dict(
                "records"
            )
        ]
    return out


def egress_summary(
    session: Session, *, window: Window, routes: Sequence[str] = DEFAULT_EXPORT_ROUTES
) -> EgressSummary:
    """The egress figures of ``window`` with ``routes`` as the declared export routes."""
    undeclared = _undeclared(_route_stats(session, window.start, window.end), routes)
    dims = _dims([str(r) for r in undeclared["route"]])
    stmt = (
        select(*dims, func.count(), func.sum(ExportEvent.bytes))
        .where(ExportEvent.ts >= window.start, ExportEvent.ts < window.end)
        .group_by(*dims)
    )
    return _fold(frame(session, stmt, _COLUMNS), undeclared)


def _summaries_daily(
    session: Session, windows: Sequence[Window], routes: Sequence[str]
) -> list[EgressSummary]:
    whole = span(windows)
    undeclared = _undeclared(_route_stats(session, whole.start, whole.end), routes)
    dims = _dims([str(r) for r in undeclared["route"]])
    index = window_index(ExportEvent.ts, windows)
    stmt = (
        select(index, *dims, func.count(), func.sum(ExportEvent.bytes))
        .where(within(ExportEvent.ts, windows))
        .group_by(index, *dims)
    )
    df = frame(session, stmt, ["window", *_COLUMNS])
    odd = [str(r) for r in undeclared["route"]]
    per_window = pd.DataFrame(columns=["window", "route", "requests", "served", "last_seen"])
    if odd:  # which undeclared routes each window saw, ordered as `egress_summary` orders them
        served = case(
            ((ExportEvent.status.between(200, 299)) & (ExportEvent.bytes > 0), 1), else_=0
        )
        per_window = frame(
            session,
            select(
                index, ExportEvent.route, func.count(), func.sum(served), func.max(ExportEvent.ts)
            )
            .where(within(ExportEvent.ts, windows), ExportEvent.route.in_(odd))
            .group_by(index, ExportEvent.route),
            ["window", "route", "requests", "served", "last_seen"],
        )
    out = []
    for i in range(len(windows)):
        seen = per_window[per_window["window"] == i]
        out.append(_fold(df[df["window"] == i], seen.drop(columns="window") if len(seen) else None))
    return out


def _coverage(session: Session, window: Window, agg: str, params: dict[str, Any]) -> MetricValue:
    return coverage_value(egress_summary(session, window=window, routes=_routes(params)))


def _coverage_daily(
    session: Session, windows: Sequence[Window], agg: str, params: dict[str, Any]
) -> list[MetricValue]:
    return [coverage_value(s) for s in _summaries_daily(session, windows, _routes(params))]


def coverage_value(summary: EgressSummary) -> MetricValue:
    """Share of served exports with a valid token and the watermark; refusals stated apart."""
    refused = sum(summary.refused.values())
    if not summary.served:
        why = "no served exports" + (f" ({refused} refused attempts)" if refused else "")
        return MetricValue(None, 0, why)
    gaps = summary.served - summary.covered
    detail = f"{gaps} of {summary.served:,} served exports uncovered"
    if summary.uncovered_routes:
        names = ", ".join(str(r["route"]) for r in summary.uncovered_routes[:3])
        detail += f"; undeclared export routes: {names}"
    if refused:
        detail += f"; {refused:,} refused attempts counted apart"
    return MetricValue(summary.covered / summary.served, summary.served, detail)


def _download_5xx(
    session: Session, window: Window, agg: str, params: dict[str, Any]
) -> MetricValue:
    return download_5xx_value(egress_summary(session, window=window, routes=_routes(params)))


def _download_5xx_daily(
    session: Session, windows: Sequence[Window], agg: str, params: dict[str, Any]
) -> list[MetricValue]:
    return [download_5xx_value(s) for s in _summaries_daily(session, windows, _routes(params))]


def download_5xx_value(summary: EgressSummary) -> MetricValue:
    """Limiter + application 5xx; no data until the limiter's log for the window is in."""
    if not summary.requests:
        return MetricValue(None, 0, "no export events")
    if not summary.proxy_events:
        return MetricValue(
            None,
            summary.requests,
            "the limiter's access log for this window is not imported "
            "(`quarterdeck collect exports --format …`): its 429/503 answers are unknown",
        )
    s5 = summary.status_5xx
    detail = (
        f"{summary.status_429} rate-limited (429); 5xx: {s5.get('limiter', 0)} limiter, "
        f"{s5.get('application', 0)} application"
    )
    if s5.get("proxy"):
        detail += f", {s5['proxy']} proxy"
    if summary.limiter_503:
        detail += f"; the limiter answered 503 {summary.limiter_503}× — {LIMITER_FIX}"
    lagging = summary.requests - summary.proxy_events
    if lagging:
        detail += f"; {lagging} application events not yet in the limiter's log"
    return MetricValue(float(summary.total_5xx), summary.requests, detail)


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
