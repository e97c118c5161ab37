"""Read side for traffic: Route53 weights per snapshot, observed request share, 429/5xx rates.

Windows longer than `RAW_MAX_WINDOW` are answered from the hourly `traffic_rollups` (kept in
step by the loader), so the Traffic page never scans months of 15-second samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from store.measures import MetricValue, Window
from store.models import (
    DnsWeightObservation,
    FailoverEvent,
    FailoverRun,
    HealthCheckObservation,
    SyncRun,
    TrafficSample,
)
from store.models.traffic import TrafficRollup
from store.queries.daily import INDEX, Statement, split, tagged_union
from store.queries.frames import frame

RAW_MAX_WINDOW = timedelta(hours=6)
LIMITER_503_MIN_SHARE = 0.8
"""An ingress with no 429s whose 5xx are at least this share 503s looks like a limiter on
ingress-nginx's default `limit-req-status-code` (503) rather than an upstream failure."""
SERIES_COLUMNS = [
    "ts",
    "region",
    "ingress",
    "requests_per_s",
    "rate_429_per_s",
    "rate_5xx_per_s",
    "rate_503_per_s",
    "cache_hit_ratio",
]
INGRESS_COLUMNS = [
    "region",
    "ingress",
    "samples",
    "requests_per_s",
    "rate_429_per_s",
    "rate_5xx_per_s",
    "rate_503_per_s",
    "ratio_429",
    "ratio_5xx",
    "cache_hit_ratio",
    "limiter_503",
]


def weights_frame(
    session: Session, *, as_of: datetime, record_name: str | None = None
) -> pd.DataFrame:
    """Latest weight of every set (not gone) as of ``as_of``.

    Columns: record_name, record_type, set_identifier, weight, share (0–1), observed_at.
    """
    return _with_share(frame(session, _weights_stmt(as_of, record_name), WEIGHT_COLUMNS))


WEIGHT_COLUMNS = ["record_name", "record_type", "set_identifier", "weight", "observed_at"]


def _weights_stmt(as_of: datetime, record_name: str | None) -> Statement:
    latest = (
        select(
            DnsWeightObservation.record_name,
            DnsWeightObservation.record_type,
            DnsWeightObservation.set_identifier,
            func.max(DnsWeightObservation.observed_at).label("at"),
        )
        .where(DnsWeightObservation.observed_at <= as_of)
        .group_by(
            DnsWeightObservation.record_name,
            DnsWeightObservation.record_type,
            DnsWeightObservation.set_identifier,
        )
        .subquery()
    )
    stmt = (
        select(
            DnsWeightObservation.record_name,
            DnsWeightObservation.record_type,
            DnsWeightObservation.set_identifier,
            DnsWeightObservation.weight,
            DnsWeightObservation.observed_at,
        )
        .join(
            latest,
            and_(
                DnsWeightObservation.record_name == latest.c.record_name,
                DnsWeightObservation.record_type == latest.c.record_type,
                DnsWeightObservation.set_identifier == latest.c.set_identifier,
                DnsWeightObservation.observed_at == latest.c.at,
            ),
        )
        .where(DnsWeightObservation.gone.is_(False))
    )
    if record_name:
        stmt = stmt.where(DnsWeightObservation.record_name == record_name.rstrip(".") + ".")
    return stmt


def _with_share(df: pd.DataFrame) -> pd.DataFrame:
    totals = df.groupby(["record_name", "record_type"])["weight"].transform("sum")
    df["share"] = (df["weight"] / totals.where(totals > 0)).fillna(0.0)
    return df


def traffic_by_region_frame(session: Session, *, window: Window) -> pd.DataFrame:
    """Per region over ``window``: requests, 429s, 5xx, 503s (counts ≈ rate × 15 s step)."""
    stmt = (
        select(
            TrafficSample.region,
            func.sum(TrafficSample.requests_per_s),
            func.sum(TrafficSample.rate_429_per_s),
            func.sum(TrafficSample.rate_5xx_per_s),
            func.sum(TrafficSample.rate_503_per_s),
            func.count(),
        )
        .where(TrafficSample.ts >= window.start, TrafficSample.ts < window.end)
        .group_by(TrafficSample.region)
    )
    return frame(session, stmt, ["region", "requests", "r429", "r5xx", "r503", "samples"])


def _use_rollups(window: Window) -> bool:
    return window.end - window.start > RAW_MAX_WINDOW


def _hour_floor(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def series_frame(session: Session, *, window: Window) -> pd.DataFrame:
    """Rates per region and ingress over time; see SERIES_COLUMNS (rates in req/s).

    Hourly means from the rollups for long windows; the 15-second samples for short ones.
    """
    stmt: Any
    if _use_rollups(window):
        stmt = (
            select(
                TrafficRollup.bucket,
                TrafficRollup.region,
                TrafficRollup.ingress,
                TrafficRollup.requests_sum / TrafficRollup.samples,
                TrafficRollup.r429_sum / TrafficRollup.samples,
                TrafficRollup.r5xx_sum / TrafficRollup.samples,
                TrafficRollup.r503_sum / TrafficRollup.samples,
                TrafficRollup.cache_hit_sum / func.nullif(TrafficRollup.cache_samples, 0),
            )
            .where(
                TrafficRollup.bucket >= _hour_floor(window.start),
                TrafficRollup.bucket < window.end,
                TrafficRollup.samples > 0,
            )
            .order_by(TrafficRollup.bucket)
        )
    else:
        stmt = (
            select(
                TrafficSample.ts,
                TrafficSample.region,
                TrafficSample.ingress,
                TrafficSample.requests_per_s,
                TrafficSample.rate_429_per_s,
                TrafficSample.rate_5xx_per_s,
                TrafficSample.rate_503_per_s,
                TrafficSample.cache_hit_ratio,
            )
            .where(TrafficSample.ts >= window.start, TrafficSample.ts < window.end)
            .order_by(TrafficSample.ts)
        )
    return frame(session, stmt, SERIES_COLUMNS)


REGION_SERIES_COLUMNS = [c for c in SERIES_COLUMNS if c != "ingress"]


def region_series_frame(session: Session, *, window: Window) -> pd.DataFrame:
    """Rates per region over time (summed over ingresses); see REGION_SERIES_COLUMNS.

    What the Traffic page charts: hourly from the rollups for long windows (about 2,200 points
    per region for 90 days), the 15-second samples for short ones. `cache_hit_ratio` is the
    mean over the region's samples that carried one.
    """
    stmt: Any
    if _use_rollups(window):
        stmt = (
            select(
                TrafficRollup.bucket,
                TrafficRollup.region,
                func.sum(TrafficRollup.requests_sum / TrafficRollup.samples),
                func.sum(TrafficRollup.r429_sum / TrafficRollup.samples),
                func.sum(TrafficRollup.r5xx_sum / TrafficRollup.samples),
                func.sum(TrafficRollup.r503_sum / TrafficRollup.samples),
                func.sum(TrafficRollup.cache_hit_sum)
                / func.nullif(func.sum(TrafficRollup.cache_samples), 0),
            )
            .where(
                TrafficRollup.bucket >= _hour_floor(window.start),
                TrafficRollup.bucket < window.end,
                TrafficRollup.samples > 0,
            )
            .group_by(TrafficRollup.bucket, TrafficRollup.region)
            .order_by(TrafficRollup.bucket)
        )
    else:
        stmt = (
            select(
                TrafficSample.ts,
                TrafficSample.region,
                func.sum(TrafficSample.requests_per_s),
                func.sum(TrafficSample.rate_429_per_s),
                func.sum(TrafficSample.rate_5xx_per_s),
                func.sum(TrafficSample.rate_503_per_s),
                func.avg(TrafficSample.cache_hit_ratio),
            )
            .where(TrafficSample.ts >= window.start, TrafficSample.ts < window.end)
            .group_by(TrafficSample.ts, TrafficSample.region)
            .order_by(TrafficSample.ts)
        )
    return frame(session, stmt, REGION_SERIES_COLUMNS)


def ingress_rates_frame(session: Session, *, window: Window) -> pd.DataFrame:
    """Mean rates per region and ingress over ``window``; see INGRESS_COLUMNS.

    `ratio_429`/`ratio_5xx` are shares of all requests (0–1); `limiter_503` flags an ingress
    with 503s and no 429s (a limiter still answering ingress-nginx's default 503).
    """
    if _use_rollups(window):
        stmt: Any = (
            select(
                TrafficRollup.region,
                TrafficRollup.ingress,
                func.sum(TrafficRollup.samples),
                func.sum(TrafficRollup.requests_sum),
                func.sum(TrafficRollup.r429_sum),
                func.sum(TrafficRollup.r5xx_sum),
                func.sum(TrafficRollup.r503_sum),
                func.sum(TrafficRollup.cache_hit_sum),
                func.sum(TrafficRollup.cache_samples),
            )
            .where(
                TrafficRollup.bucket >= _hour_floor(window.start), TrafficRollup.bucket < window.end
            )
            .group_by(TrafficRollup.region, TrafficRollup.ingress)
        )
    else:
        stmt = (
            select(
                TrafficSample.region,
                TrafficSample.ingress,
                func.count(),
                func.sum(TrafficSample.requests_per_s),
                func.sum(TrafficSample.rate_429_per_s),
                func.sum(TrafficSample.rate_5xx_per_s),
                func.sum(TrafficSample.rate_503_per_s),
                func.sum(TrafficSample.cache_hit_ratio),
                func.count(TrafficSample.cache_hit_ratio),
            )
            .where(TrafficSample.ts >= window.start, TrafficSample.ts < window.end)
            .group_by(TrafficSample.region, TrafficSample.ingress)
        )
    rows = []
    for region, ingress, n, req, r429, r5xx, r503, hit, hits in session.execute(stmt).all():
        n = int(n or 0)
        if n == 0:
            continue
        req, r429, r5xx, r503 = (float(v or 0.0) for v in (req, r429, r5xx, r503))
        rows.append(
            (
                region,
                ingress,
                n,
                req / n,
                r429 / n,
                r5xx / n,
                r503 / n,
                r429 / req if req else None,
                r5xx / req if req else None,
                float(hit) / int(hits) if hits else None,
                bool(r429 == 0 and r503 > 0 and r503 >= LIMITER_503_MIN_SHARE * r5xx),
            )
        )
    df = pd.DataFrame(rows, columns=INGRESS_COLUMNS)
    return df.sort_values(["region", "ingress"], ignore_index=True)


def region_share_frame(
    session: Session,
    *,
    window: Window,
    record_name: str | None = None,
    rates: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Configured weight share vs observed request share per region.

    Columns: region, weight, weight_share (0–1, as of the window's end), requests_per_s,
    observed_share (0–1 over the window). Regions are matched to Route53 set identifiers.
    Pass the window's ``rates`` (`ingress_rates_frame`) when already read.
    """
    if rates is None:
        rates = ingress_rates_frame(session, window=window)
    per_region = rates.groupby("region")["requests_per_s"].sum() if len(rates) else pd.Series()
    total = float(per_region.sum()) if len(per_region) else 0.0
    weights = weights_frame(session, as_of=window.end, record_name=record_name)
    regions = sorted(set(per_region.index) | set(weights["set_identifier"]))
    rows = []
    for region in regions:
        w = weights[weights["set_identifier"] == region]
        rps = float(per_region.get(region, 0.0)) if len(per_region) else 0.0
        rows.append(
            (
                region,
                int(w["weight"].sum()) if len(w) else None,
                float(w["share"].sum()) if len(w) else None,
                rps,
                rps / total if total else None,
            )
        )
    return pd.DataFrame(
        rows, columns=["region", "weight", "weight_share", "requests_per_s", "observed_share"]
    )


def health_checks_frame(session: Session, *, as_of: datetime) -> pd.DataFrame:
    """Latest observation of every health check per checker as of ``as_of``.

    Columns: health_check_id, checker_region, healthy, status, checked_at.
    """
    latest = (
        select(
            HealthCheckObservation.health_check_id,
            HealthCheckObservation.checker_region,
            func.max(HealthCheckObservation.checked_at).label("at"),
        )
        .where(HealthCheckObservation.checked_at <= as_of)
        .group_by(HealthCheckObservation.health_check_id, HealthCheckObservation.checker_region)
        .subquery()
    )
    stmt = (
        select(
            HealthCheckObservation.health_check_id,
            HealthCheckObservation.checker_region,
            HealthCheckObservation.healthy,
            HealthCheckObservation.status,
            HealthCheckObservation.checked_at,
        )
        .join(
            latest,
            and_(
                HealthCheckObservation.health_check_id == latest.c.health_check_id,
                HealthCheckObservation.checker_region == latest.c.checker_region,
                HealthCheckObservation.checked_at == latest.c.at,
            ),
        )
        .order_by(HealthCheckObservation.health_check_id, HealthCheckObservation.checker_region)
    )
    return frame(
        session, stmt, ["health_check_id", "checker_region", "healthy", "status", "checked_at"]
    )


def annotations_frame(session: Session, *, window: Window) -> pd.DataFrame:
    """Weight changes and failover phases in ``window``, for chart annotations.

    Columns: at, kind (`weights` | `failover`), label. A weight change is a snapshot whose
    weight (or presence) of a set differs from the set's previous snapshot.
    """
    obs = session.execute(
        select(
            DnsWeightObservation.observed_at,
            DnsWeightObservation.record_name,
            DnsWeightObservation.set_identifier,
            DnsWeightObservation.weight,
            DnsWeightObservation.gone,
        )
        .where(
            DnsWeightObservation.observed_at >= window.start - timedelta(days=1),
            DnsWeightObservation.observed_at < window.end,
        )
        .order_by(DnsWeightObservation.observed_at)
    ).all()
    last: dict[tuple[str, str], int] = {}
    changes: dict[datetime, list[str]] = {}
    for at, name, ident, weight, gone in obs:
        key = (str(name), str(ident))
        value = 0 if gone else int(weight)
        if key in last and last[key] != value and at >= window.start:
            changes.setdefault(at, []).append(f"{ident} {last[key]}→{value}")
        last[key] = value
    rows: list[tuple[datetime, str, str]] = [
        (at, "weights", "weights " + ", ".join(parts)) for at, parts in changes.items()
    ]
    phases = session.execute(
        select(FailoverEvent.at, FailoverEvent.phase, FailoverRun.environment)
        .join(FailoverRun, FailoverRun.run_key == FailoverEvent.run_key)
        .where(
            FailoverEvent.phase.is_not(None),
            FailoverEvent.at >= window.start,
            FailoverEvent.at < window.end,
        )
        .order_by(FailoverEvent.at)
    ).all()
    rows += [(at, "failover", f"{env} failover {phase}") for at, phase, env in phases]
    rows.sort(key=lambda r: r[0])
    return pd.DataFrame(rows, columns=["at", "kind", "label"])


def last_sync_error(session: Session, source: str = "prometheus.traffic") -> str | None:
    """The error of the newest run of ``source`` if that run failed, else None."""
    row = session.execute(
        select(SyncRun.status, SyncRun.error)
        .where(SyncRun.source == source)
        .order_by(SyncRun.id.desc())
        .limit(1)
    ).first()
    return str(row[1]) if row and row[0] == "failed" else None


def latest_sample_at(session: Session) -> datetime | None:
    """Time of the newest traffic sample (for "stale since")."""
    value: datetime | None = session.scalar(select(func.max(TrafficSample.ts)))
    return value


def _weight_split(
    session: Session, window: Window, agg: str, params: dict[str, Any]
) -> MetricValue:
    return _weight_split_value(
        weights_frame(session, as_of=window.end, record_name=params.get("record_name"))
    )


def _weight_split_daily(
    session: Session, windows: Sequence[Window], agg: str, params: dict[str, Any]
) -> list[MetricValue]:
    """``traffic.dns_weight_split_deviation`` as of each window's end, in one statement."""
    stmt = tagged_union(_weights_stmt(w.end, params.get("record_name")) for w in windows)
    df = frame(session, stmt, [INDEX, *WEIGHT_COLUMNS])
    return [_weight_split_value(_with_share(part)) for part in split(df, len(windows))]


def _weight_split_value(df: pd.DataFrame) -> MetricValue:
    if not len(df):
        return MetricValue(None, 0, "no weighted records observed")
    df = df.sort_values(["record_name", "set_identifier"])  # the detail lists sets in name order
    equal = 1 / len(df)
    deviation = float((df["share"] - equal).abs().max())
    split = " / ".join(f"{s}={w}" for s, w in zip(df["set_identifier"], df["weight"], strict=True))
    return MetricValue(deviation, len(df), split)
