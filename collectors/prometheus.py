"""Prometheus as a source: `query_range` matrices → traffic samples and SLO good/total samples.

Each signal is its own PromQL query (defaults target ingress-nginx); results are joined on
(timestamp, region, ingress). Prometheus sends values as strings so that NaN and ±Inf survive
JSON; those are skipped rather than stored as numbers. `region` is not an ingress-nginx label:
it must be attached at scrape time (a `static_configs` target label or `relabel_configs`), so
its name is configurable. Prometheus' `external_labels` do *not* work: they are added only when
data leaves Prometheus (federation, remote write, alerts) and never appear in `query_range`
answers; a single-region install sets `default_region` instead.

ingress-nginx emits no cache metric (`nginx_ingress_controller_requests` has no cache label),
so the cache hit ratio has no default query: it stays empty (`CACHE_HIT_NO_DATA`) unless a
`cache_hit_ratio` query is configured for an exporter that has one.

The HTTP client (a `requests.Session` or anything with its `post`) is passed in; ranges are cut
into chunks below Prometheus' 11,000-points-per-series limit, and the end of the last stored
range is the cursor, so a re-run adds nothing and a failed run keeps the cursor where it was.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from collectors.base import InvalidItem
from store.db import session_scope
from store.ingest import IngestResult, record_sync_run, upsert, utcnow
from store.models import SloSample, SyncRun, TrafficSample
from store.models.traffic import TrafficRollup

log = logging.getLogger(__name__)

SOURCE_TRAFFIC = "prometheus.traffic"
SOURCE_SLO = "prometheus.slo"

# Signal name → traffic_samples column.
TRAFFIC_SIGNALS = {
    "requests": "requests_per_s",
    "429": "rate_429_per_s",
    "5xx": "rate_5xx_per_s",
    "503": "rate_503_per_s",
    "cache_hit_ratio": "cache_hit_ratio",
}

DEFAULT_TRAFFIC_QUERIES = {
    "requests": "sum by (region, ingress) (rate(nginx_ingress_controller_requests[1m]))",
    "429": 'sum by (region, ingress) (rate(nginx_ingress_controller_requests{status="429"}[1m]))',
    "5xx": (
        'sum by (region, ingress) (rate(nginx_ingress_controller_requests{status=~"5..|5xx"}[1m]))'
    ),
    "503": 'sum by (region, ingress) (rate(nginx_ingress_controller_requests{status="503"}[1m]))',
}
CACHE_HIT_NO_DATA = (
    "no cache hit ratio: ingress-nginx exports no cache metric; set "
    "QUARTERDECK_PROMETHEUS__QUERIES to include a `cache_hit_ratio` query (e.g. from an "
    "exporter with an upstream cache status label) to fill it"
)


def matrix_series(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the series of a `query_range` answer; raise on Prometheus' error envelope."""
    if response.get("status") != "success":
        raise InvalidItem(
            f"prometheus error {response.get('errorType', '?')}: {response.get('error', response)}"
        )
    data = response.get("data") or {}
    if data.get("resultType") != "matrix":
        raise InvalidItem(f"expected a matrix result, got {data.get('resultType')!r}")
    return list(data.get("result") or [])


def _value(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def transform_traffic(
    responses: Mapping[str, Mapping[str, Any]],
    *,
    region_label: str = "region",
    ingress_label: str = "ingress",
    default_region: str | None = None,
) -> list[dict[str, Any]]:
    """Join per-signal matrices into `traffic_samples` rows keyed by (ts, region, ingress).

    A series without ``region_label`` takes ``default_region``; with none set it is an error
    naming the fix (scrape-time relabelling; `external_labels` never reach query answers).
    """
    rows: dict[tuple[datetime, str, str], dict[str, Any]] = {}
    for signal, response in responses.items():
        column = TRAFFIC_SIGNALS.get(signal)
        if column is None:
            raise InvalidItem(f"unknown traffic signal {signal!r}")
        for series in matrix_series(response):
            metric = series.get("metric") or {}
            region = metric.get(region_label) or default_region
            if not region:
                raise InvalidItem(
                    f"{signal}: series without the {region_label!r} label: {metric} (add it at "
                    "scrape time with a target label or relabel_configs — external_labels are "
                    "not returned by queries — or set QUARTERDECK_PROMETHEUS__DEFAULT_REGION)"
                )
            ingress = metric.get(ingress_label) or "*"
            for ts, text in series.get("values") or []:
                value = _value(text)
                if value is None:
                    continue
                at = datetime.fromtimestamp(float(ts), UTC)
                row = rows.setdefault(
                    (at, region, ingress),
                    {
                        "ts": at,
                        "region": region,
                        "ingress": ingress,
                        "requests_per_s": 0.0,
                        "rate_429_per_s": 0.0,
                        "rate_5xx_per_s": 0.0,
                        "rate_503_per_s": 0.0,
                        "cache_hit_ratio": None,
                    },
                )
                row[column] = value
    return list(rows.values())


def load_traffic(session: Session, rows: list[dict[str, Any]]) -> IngestResult:
    """Upsert traffic samples and refresh their hourly rollups; a re-poll adds no rows."""
    result = IngestResult()
    update = tuple(TRAFFIC_SIGNALS.values())
    result.add(
        upsert(session, TrafficSample, rows, conflict=("ts", "region", "ingress"), update=update)
    )
    refresh_rollups(session, rows)
    return result


ROLLUP_BUCKET = timedelta(hours=1)


def _hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def refresh_rollups(session: Session, rows: list[dict[str, Any]]) -> int:
    """Recompute the hourly rollups touched by ``rows`` from the stored samples.

    Recomputing whole buckets (rather than adding the batch) keeps a re-polled range, whose
    samples were updated in place, from being counted twice. Returns the buckets written.
    """
    if not rows:
        return 0
    keys = {(r["region"], r["ingress"]) for r in rows}
    start = _hour(min(r["ts"] for r in rows))
    end = _hour(max(r["ts"] for r in rows)) + ROLLUP_BUCKET
    if session.get_bind().dialect.name == "postgresql":
        bucket: Any = func.date_trunc("hour", TrafficSample.ts)
    else:
        bucket = func.strftime("%Y-%m-%d %H:00:00", TrafficSample.ts)
    stmt = (
        select(
            bucket,
            TrafficSample.region,
            TrafficSample.ingress,
            func.count(),
            func.sum(TrafficSample.requests_per_s),
            func.sum(TrafficSample.rate_429_per_s),
            func.sum(TrafficSample.rate_5xx_per_s),
            func.sum(TrafficSample.rate_503_per_s),
            func.coalesce(func.sum(TrafficSample.cache_hit_ratio), 0.0),
            func.count(TrafficSample.cache_hit_ratio),
        )
        .where(TrafficSample.ts >= start, TrafficSample.ts < end)
        .group_by(bucket, TrafficSample.region, TrafficSample.ingress)
    )
    if len(keys) <= 50:
        stmt = stmt.where(tuple_(TrafficSample.region, TrafficSample.ingress).in_(list(keys)))
    out = []
    for at, region, ingress, n, req, r429, r5xx, r503, hit, hits in session.execute(stmt).all():
        when = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
        out.append(
            {
                "bucket": when.replace(tzinfo=UTC) if when.tzinfo is None else when,
                "region": region,
                "ingress": ingress,
                "samples": int(n),
                "requests_sum": float(req or 0.0),
                "r429_sum": float(r429 or 0.0),
                "r5xx_sum": float(r5xx or 0.0),
                "r503_sum": float(r503 or 0.0),
                "cache_hit_sum": float(hit or 0.0),
                "cache_samples": int(hits),
            }
        )
    upsert(
        session,
        TrafficRollup,
        out,
        conflict=("bucket", "region", "ingress"),
        update=(
            "samples",
            "requests_sum",
            "r429_sum",
            "r5xx_sum",
            "r503_sum",
            "cache_hit_sum",
            "cache_samples",
        ),
    )
    return len(out)


def transform_slo(
    good: Mapping[str, Any], total: Mapping[str, Any], *, service: str, slo: str
) -> list[dict[str, Any]]:
    """Pair the good and total matrices of one SLO into `slo_samples` rows (counts per step)."""

    def flatten(response: Mapping[str, Any]) -> dict[datetime, float]:
        out: dict[datetime, float] = {}
        for series in matrix_series(response):
            for ts, text in series.get("values") or []:
                value = _value(text)
                if value is not None:
                    at = datetime.fromtimestamp(float(ts), UTC)
                    out[at] = out.get(at, 0.0) + value
        return out

    goods, totals = flatten(good), flatten(total)
    return [
        {"service": service, "slo": slo, "ts": at, "good": goods.get(at, 0.0), "total": count}
        for at, count in sorted(totals.items())
    ]


def load_slo(session: Session, rows: list[dict[str, Any]]) -> IngestResult:
    """Upsert SLO samples."""
    result = IngestResult()
    result.add(
        upsert(
            session, SloSample, rows, conflict=("service", "slo", "ts"), update=("good", "total")
        )
    )
    return result


# --------------------------------------------------------------------------------------------
# fetch and sync
# --------------------------------------------------------------------------------------------

MAX_POINTS_PER_SERIES = 11_000
"""Prometheus refuses a `query_range` whose (end − start) / step exceeds this."""


class HttpPoster(Protocol):
    """The part of `requests.Session` the collector uses."""

    def post(self, url: str, *, data: Mapping[str, Any], timeout: float) -> Any: ...


class PrometheusUnavailable(RuntimeError):
    """Prometheus could not be reached or answered with an error; the run is recorded as failed."""


def chunk_ranges(
    start: datetime, end: datetime, step_s: int, *, max_points: int = MAX_POINTS_PER_SERIES
) -> Iterator[tuple[datetime, datetime]]:
    """Cut [start, end] into inclusive ranges of at most ``max_points`` steps each.

    Consecutive chunks do not share an evaluation time: the next one begins one step after the
    previous end, so no sample is fetched twice.
    """
    if step_s <= 0:
        raise ValueError("step must be positive")
    span = timedelta(seconds=step_s * (max_points - 1))
    cur = start
    while cur <= end:
        stop = min(end, cur + span)
        yield cur, stop
        cur = stop + timedelta(seconds=step_s)


def fetch_range(
    http: HttpPoster,
    base_url: str,
    query: str,
    *,
    start: datetime,
    end: datetime,
    step_s: int,
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    """POST `/api/v1/query_range` (form-encoded, so long PromQL fits) and return its JSON.

    Error envelopes (400 bad_data, 422 execution, 503 timeout) and non-JSON answers from a
    proxy in front of Prometheus raise :class:`PrometheusUnavailable` with the reason.
    """
    url = base_url.rstrip("/") + "/api/v1/query_range"
    try:
        response = http.post(
            url,
            data={
                "query": query,
                "start": f"{start.timestamp():.3f}",
                "end": f"{end.timestamp():.3f}",
                "step": str(step_s),
            },
            timeout=timeout_s,
        )
    except Exception as exc:  # connection refused, DNS, timeout: all mean "Prometheus down"
        raise PrometheusUnavailable(f"{url}: {type(exc).__name__}: {exc}") from exc
    try:
        body = response.json()
    except ValueError as exc:
        raise PrometheusUnavailable(
            f"{url}: HTTP {response.status_code}, not JSON: {response.text[:200]!r}"
        ) from exc
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else body
        kind = body.get("errorType", "?") if isinstance(body, dict) else "?"
        raise PrometheusUnavailable(f"{url}: HTTP {response.status_code} {kind}: {error}")
    return body


@dataclass(frozen=True)
class TrafficPoll:
    """What to ask Prometheus for: one PromQL per signal, the step and label names."""

    base_url: str
    queries: Mapping[str, str]
    step_s: int = 15
    region_label: str = "region"
    ingress_label: str = "ingress"
    lookback: timedelta = timedelta(hours=1)
    settle: timedelta = timedelta(seconds=30)
    """How far behind now the range ends: the newest points are still being scraped."""
    retention: timedelta | None = None
    """Raw samples older than this are deleted after a successful run (rollups are kept)."""
    timeout_s: float = 30.0
    """Per-request timeout of each `query_range` call."""
    default_region: str | None = None
    """Region of series without ``region_label`` (a single-region install)."""


def prune_samples(session: Session, *, before: datetime) -> int:
    """Delete raw traffic samples older than ``before``; their hourly rollups stay."""
    from sqlalchemy import delete

    result = session.execute(delete(TrafficSample).where(TrafficSample.ts < before))
    return int(getattr(result, "rowcount", 0) or 0)


def last_cursor(session: Session, source: str) -> datetime | None:
    """The cursor of the newest successful run of ``source`` (an ISO timestamp), if any."""
    value = session.scalar(
        select(SyncRun.cursor)
        .where(SyncRun.source == source, SyncRun.status == "ok", SyncRun.cursor.is_not(None))
        .order_by(SyncRun.id.desc())
        .limit(1)
    )
    return datetime.fromisoformat(value) if value else None


def _align(at: datetime, step_s: int) -> datetime:
    seconds = math.floor(at.timestamp() / step_s) * step_s
    return datetime.fromtimestamp(seconds, UTC)


def sync_traffic(
    factory: sessionmaker[Session],
    http: HttpPoster,
    poll: TrafficPoll,
    *,
    now: datetime | None = None,
    max_points: int = MAX_POINTS_PER_SERIES,
) -> IngestResult:
    """Fetch every signal from the cursor to now, store it, advance the cursor; record the run.

    Each chunk is one transaction, and the cursor moves only with a successful run, so a run
    that fails half-way leaves the cursor where it was and the retry re-fetches (upserting
    the same rows: nothing is duplicated). A failure is recorded on Ingest health and re-raised.
    """
    started = utcnow()
    result = IngestResult()
    with session_scope(factory) as session:
        cursor = last_cursor(session, SOURCE_TRAFFIC)
    end = _align((now or started) - poll.settle, poll.step_s)
    begin = (
        cursor + timedelta(seconds=poll.step_s)
        if cursor
        else _align(end - poll.lookback, poll.step_s)
    )
    try:
        for lo, hi in chunk_ranges(begin, end, poll.step_s, max_points=max_points):
            responses = {
                signal: fetch_range(
                    http,
                    poll.base_url,
                    query,
                    start=lo,
                    end=hi,
                    step_s=poll.step_s,
                    timeout_s=poll.timeout_s,
                )
                for signal, query in poll.queries.items()
            }
            rows = transform_traffic(
                responses,
                region_label=poll.region_label,
                ingress_label=poll.ingress_label,
                default_region=poll.default_region,
            )
            with session_scope(factory) as session:
                result.merge(load_traffic(session, rows))
    except Exception as exc:
        log.warning("prometheus sync failed: %s", exc)
        with session_scope(factory) as session:
            record_sync_run(
                session,
                source=SOURCE_TRAFFIC,
                started_at=started,
                result=result,
                error=str(exc),
                cursor=cursor.isoformat() if cursor else None,
            )
        raise
    new_cursor = max(end, cursor) if cursor else end
    with session_scope(factory) as session:
        if poll.retention is not None:
            pruned = prune_samples(session, before=end - poll.retention)
            if pruned:
                log.info("pruned %d traffic samples older than %s", pruned, poll.retention)
        record_sync_run(
            session,
            source=SOURCE_TRAFFIC,
            started_at=started,
            result=result,
            cursor=new_cursor.isoformat(),
        )
    return result
