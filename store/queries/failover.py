"""Read side for failover: runs with their phases, RTO, RPO and replication lag."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from store.metrics import MetricValue, Window, metric
from store.models import FAILOVER_PHASES, FailoverEvent, FailoverRun, ReplicationLagSample
from store.queries.frames import frame

LAG_STALE_AFTER = timedelta(minutes=15)
RUN_COLUMNS = [
    "run_key",
    "environment",
    "kind",
    "started_at",
    "ended_at",
    *[f"{p}_at" for p in FAILOVER_PHASES],
    "rto_s",
    "rpo_s",
]


def phase_times(session: Session, run_key: str) -> dict[str, datetime]:
    """First time each phase was reached in a run."""
    stmt = (
        select(FailoverEvent.phase, FailoverEvent.at)
        .where(FailoverEvent.run_key == run_key, FailoverEvent.phase.is_not(None))
        .order_by(FailoverEvent.at)
    )
    out: dict[str, datetime] = {}
    for phase, at in session.execute(stmt).all():
        out.setdefault(str(phase), at)
    return out


def lag_at(session: Session, *, environment: str, at: datetime) -> float | None:
    """Replication lag (s) of the most lagging replica at ``at`` (latest sample within 15 min)."""
    latest = session.execute(
        select(ReplicationLagSample.replica, ReplicationLagSample.ts, ReplicationLagSample.lag_s)
        .where(
            ReplicationLagSample.environment == environment,
            ReplicationLagSample.ts <= at,
            ReplicationLagSample.ts >= at - LAG_STALE_AFTER,
        )
        .order_by(ReplicationLagSample.ts.desc())
        .limit(50)
    ).all()
    per_replica: dict[str, float] = {}
    for replica, _ts, lag in latest:
        per_replica.setdefault(str(replica), float(lag))
    return max(per_replica.values()) if per_replica else None


def runs_frame(session: Session, *, window: Window, environment: str | None = None) -> pd.DataFrame:
    """Failover runs started in ``window`` with phase times, RTO and RPO; see RUN_COLUMNS.

    RTO = `started` → `writable` (s); RPO = replication lag at `started` (0 for a switchover).
    """
    stmt = (
        select(FailoverRun)
        .where(FailoverRun.started_at >= window.start, FailoverRun.started_at < window.end)
        .order_by(FailoverRun.started_at)
    )
    if environment:
        stmt = stmt.where(FailoverRun.environment == environment)
    rows = []
    for run in session.scalars(stmt):
        phases = phase_times(session, run.run_key)
        started = phases.get("started", run.started_at)
        writable = phases.get("writable")
        rto = (writable - started).total_seconds() if writable else None
        rpo = (
            0.0
            if run.kind == "switchover"
            else lag_at(session, environment=run.environment, at=started)
        )
        rows.append(
            (
                run.run_key,
                run.environment,
                run.kind,
                run.started_at,
                run.ended_at,
                *[phases.get(p) for p in FAILOVER_PHASES],
                rto,
                rpo,
            )
        )
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def events_frame(session: Session, *, run_key: str) -> pd.DataFrame:
    """Every event of a run in order. Columns: at, phase, source, message."""
    stmt = (
        select(FailoverEvent.at, FailoverEvent.phase, FailoverEvent.source, FailoverEvent.message)
        .where(FailoverEvent.run_key == run_key)
        .order_by(FailoverEvent.at)
    )
    return frame(session, stmt, ["at", "phase", "source", "message"])


def _latest_run(
    session: Session, window: Window, params: dict[str, Any], column: str
) -> MetricValue:
    runs = runs_frame(session, window=window, environment=params.get("environment"))
    measured = runs[runs[column].notna()]
    if not len(measured):
        what = "no failover runs" if not len(runs) else f"{len(runs)} run(s), none measured yet"
        return MetricValue(None, len(runs), what)
    last = measured.iloc[-1]
    return MetricValue(
        float(last[column]), len(measured), f"latest: {last['run_key']} ({len(measured)} measured)"
    )


@metric(
    "failover.rto",
    unit="s",
    page="/failover",
    aggregations=("latest",),
    definition="""Promotion start (first "Started … failover"/promote event, or the drill's
    start mark) → first successful write on the new primary; the latest measured run in the
    window.""",
)
def _rto(session: Session, window: Window, agg: str, params: dict[str, Any]) -> MetricValue:
    return _latest_run(session, window, params, "rto_s")


@metric(
    "failover.rpo",
    unit="s",
    page="/failover",
    aggregations=("latest",),
    definition="""Replication lag (seconds) at the moment promotion started; 0 for a verified
    switchover. The latest measured run in the window.""",
)
def _rpo(session: Session, window: Window, agg: str, params: dict[str, Any]) -> MetricValue:
    return _latest_run(session, window, params, "rpo_s")


@metric(
    "failover.replica_lag",
    unit="s",
    page="/failover",
    state=True,
    definition="""Replication lag of the most lagging replica as of the end of the window
    (latest sample no older than 15 minutes; older means no data).""",
)
def _replica_lag(session: Session, window: Window, agg: str, params: dict[str, Any]) -> MetricValue:
    env = params.get("environment", "stage")
    lag = lag_at(session, environment=env, at=window.end)
    if lag is None:
        return MetricValue(None, 0, f"no lag sample from {env} in the last 15 min of the window")
    return MetricValue(lag, 1, f"{env}: {lag:.0f} s")
