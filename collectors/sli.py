"""SLIs from Prometheus: each SLO's `good`/`total` queries → `slo_samples` (counts per step).

For every SLO (`data/slos/*.yaml`, `source.kind: prometheus`) the collector asks `query_range`
for both queries with the SLO's own step, every range selector rewritten to that step
(`store.slo.with_range`), so `rate(x[1m])` evaluated every minute × 60 s is the count of that
minute. A sample covers the step ending at its `ts`. The first run reaches back `lookback`;
later runs start one step after the cursor (the end of the last successful run of that SLO,
source `prometheus.sli:<service>/<slo>` on Ingest health). Rows are upserted on
(service, slo, ts): re-running a window rewrites the same rows and adds none. One SLO failing
is recorded as its own failed run and does not stop the others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from collectors.prometheus import (
    MAX_POINTS_PER_SERIES,
    HttpPoster,
    chunk_ranges,
    fetch_range,
    last_cursor,
    load_slo,
    transform_slo,
)
from store.db import session_scope
from store.ingest import IngestResult, record_sync_run, utcnow
from store.slo import SloDefinition, with_range

log = logging.getLogger(__name__)

SOURCE_PREFIX = "prometheus.sli"


def source_name(slo: SloDefinition) -> str:
    """The Ingest-health source (and cursor) of one SLO."""
    return f"{SOURCE_PREFIX}:{slo.service}/{slo.slo}"


@dataclass
class SliReport:
    """Per SLO (`service/slo`): what was stored, or why it failed."""

    results: dict[str, IngestResult] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"{key}: {result.as_dict()}" for key, result in self.results.items()]
        return out + [f"{key}: failed: {error}" for key, error in self.errors.items()]


def _align(at: datetime, step_s: int) -> datetime:
    return datetime.fromtimestamp((int(at.timestamp()) // step_s) * step_s, at.tzinfo)


def queries_for(slo: SloDefinition) -> tuple[str, str]:
    """The (good, total) PromQL the collector sends: range selectors set to the SLO's step."""
    step = slo.source.step_delta
    return with_range(slo.source.good, step), with_range(slo.source.total, step)


def sync_slo(
    factory: sessionmaker[Session],
    http: HttpPoster,
    slo: SloDefinition,
    *,
    base_url: str,
    now: datetime,
    timeout_s: float = 30.0,
    settle: timedelta = timedelta(seconds=30),
    max_points: int = MAX_POINTS_PER_SERIES,
) -> IngestResult:
    """Collect one SLO from its cursor (or ``now`` − lookback) to ``now`` − ``settle``."""
    started = utcnow()
    source = source_name(slo)
    step_s = int(slo.source.step_delta.total_seconds())
    result = IngestResult()
    with session_scope(factory) as session:
        cursor = last_cursor(session, source)
    end = _align(now - settle, step_s)
    begin = (
        cursor + timedelta(seconds=step_s)
        if cursor
        else _align(end - slo.source.lookback_delta, step_s)
    )
    good_q, total_q = queries_for(slo)
    try:
        for lo, hi in chunk_ranges(begin, end, step_s, max_points=max_points):
            good = fetch_range(
                http, base_url, good_q, start=lo, end=hi, step_s=step_s, timeout_s=timeout_s
            )
            total = fetch_range(
                http, base_url, total_q, start=lo, end=hi, step_s=step_s, timeout_s=timeout_s
            )
            rows = transform_slo(good, total, service=slo.service, slo=slo.slo)
            for row in rows:  # per-second rates → events in the step ending at ts
                row["good"] = min(row["good"], row["total"]) * step_s
                row["total"] = row["total"] * step_s
            with session_scope(factory) as session:
                result.merge(load_slo(session, rows))
    except Exception as exc:
        with session_scope(factory) as session:
            record_sync_run(
                session,
                source=source,
                started_at=started,
                result=result,
                error=str(exc),
                cursor=cursor.isoformat() if cursor else None,
            )
        raise
    new_cursor = max(end, cursor) if cursor else end
    with session_scope(factory) as session:
        record_sync_run(
            session, source=source, started_at=started, result=result, cursor=new_cursor.isoformat()
        )
    return result


def sync_slis(
    factory: sessionmaker[Session],
    http: HttpPoster,
    slos: Iterable[SloDefinition],
    *,
    base_url: str,
    now: datetime | None = None,
    timeout_s: float = 30.0,
    settle: timedelta = timedelta(seconds=30),
) -> SliReport:
    """Collect every Prometheus-sourced SLO; failures are reported per SLO, not raised."""
    at = now or utcnow()
    report = SliReport()
    for slo in slos:
        if slo.source.kind != "prometheus":
            continue
        key = f"{slo.service}/{slo.slo}"
        try:
            report.results[key] = sync_slo(
                factory, http, slo, base_url=base_url, now=at, timeout_s=timeout_s, settle=settle
            )
        except Exception as exc:
            log.warning("SLI collection of %s failed: %s", key, exc)
            report.errors[key] = str(exc)
    return report
