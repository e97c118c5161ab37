"""Read side for failover: runs with their phases, RTO, RPO and replication lag.

The live page polls `live_run` every two seconds: it reads one run, its events and a bounded
lag window (all indexed by run key or time), never the whole history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.measures import MetricValue, Window
from store.models import (
    FAILOVER_PHASES,
    FailoverEvent,
    FailoverRun,
    ReplicationLagSample,
    SyncRun,
)
from store.queries.daily import INDEX, Statement, span, split, tagged_union
from store.queries.frames import frame

LAG_STALE_AFTER = timedelta(minutes=15)
PHASES: tuple[str, ...] = FAILOVER_PHASES
"""The failover phases in order (for the console, which does not import the models)."""

RTO_TARGET_S = 600.0
RPO_TARGET_S = 300.0
LAG_BEFORE_PROMOTION = timedelta(minutes=20)
FAILOVER_SOURCES = ("failover", "failover.probe", "failover.rds")
RUN_COLUMNS = [
    "run_key",
    "environment",
    "kind",
    "started_at",
    "ended_at",
    *[f"{p}_at" for p in FAILOVER_PHASES if p != "started"],
    "rto_s",
    "rpo_s",
]
"""`started_at` is the first `started` phase (the run's own start when none is recorded)."""


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
    return _max_lag(session.execute(_lag_stmt(environment, at)).all())


def _lag_stmt(environment: str, at: datetime) -> Statement:
    return (
        select(ReplicationLagSample.replica, ReplicationLagSample.ts, ReplicationLagSample.lag_s)
        .where(
            ReplicationLagSample.environment == environment,
            ReplicationLagSample.ts <= at,
            ReplicationLagSample.ts >= at - LAG_STALE_AFTER,
        )
        .order_by(ReplicationLagSample.ts.desc())
        .limit(50)
    )


def _max_lag(newest_first: Sequence[Any]) -> float | None:
    """The largest of each replica's newest lag among (replica, ts, lag_s) rows, newest first."""
    per_replica: dict[str, float] = {}
    for replica, _ts, lag in newest_first:
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
                started,
                run.ended_at,
                *[phases.get(p) for p in FAILOVER_PHASES if p != "started"],
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
    return _latest_run_value(runs, column)


def _latest_run_daily(
    session: Session, windows: Sequence[Window], params: dict[str, Any], column: str
) -> list[MetricValue]:
    """The latest measured run per consecutive window, from the runs of the whole span.

    A run belongs to the window its `failover_runs.started_at` falls in (as in `runs_frame`).
    """
    whole = span(windows)
    runs = runs_frame(session, window=whole, environment=params.get("environment"))
    started = dict(
        session.execute(
            select(FailoverRun.run_key, FailoverRun.started_at).where(
                FailoverRun.started_at >= whole.start, FailoverRun.started_at < whole.end
            )
        ).all()
    )
    when = [started[key] for key in runs["run_key"]]
    return [
        _latest_run_value(
            runs[pd.Series([w.start <= t < w.end for t in when], index=runs.index, dtype=bool)],
            column,
        )
        for w in windows
    ]


def _latest_run_value(runs: pd.DataFrame, column: str) -> MetricValue:
    measured = runs[runs[column].notna()]
    if not len(measured):
        what = "no failover runs" if not len(runs) else f"{len(runs)} run(s), none measured yet"
        return MetricValue(None, len(runs), what)
    last = measured.iloc[-1]
    return MetricValue(
        float(last[column]), len(measured), f"latest: {last['run_key']} ({len(measured)} measured)"
    )


LATEST_RUN_PREFIX = "latest: "
"""How `_latest_run_value` names the run behind an RTO/RPO value in its detail."""


def latest_run_key(detail: str) -> str | None:
    """The run key an RTO/RPO goal's detail names (``latest: <key> (…)``), else None."""
    if not detail.startswith(LATEST_RUN_PREFIX):
        return None
    key = detail.removeprefix(LATEST_RUN_PREFIX).split(" ", 1)[0]
    return key or None


def _rto(session: Session, window: Window, agg: str, params: dict[str, Any]) -> MetricValue:
    return _latest_run(session, window, params, "rto_s")


def _rto_daily(
    session: Session, windows: Sequence[Window], agg: str, params: dict[str, Any]
) -> list[MetricValue]:
    return _latest_run_daily(session, windows, params, "rto_s")


def _rpo(session: Session, window: Window, agg: str, params: dict[str, Any]) -> MetricValue:
    return _latest_run(session, window, params, "rpo_s")


def _rpo_daily(
    session: Session, windows: Sequence[Window], agg: str, params: dict[str, Any]
) -> list[MetricValue]:
    return _latest_run_daily(session, windows, params, "rpo_s")


def _replica_lag(session: Session, window: Window, agg: str, params: dict[str, Any]) -> MetricValue:
    env = params.get("environment", "stage")
    return _replica_lag_value(lag_at(session, environment=env, at=window.end), env)


def _replica_lag_daily(
    session: Session, windows: Sequence[Window], agg: str, params: dict[str, Any]
) -> list[MetricValue]:
    """``failover.replica_lag`` as of each window's end: the per-end selects as one statement."""
    env = params.get("environment", "stage")
    union = tagged_union(_lag_stmt(env, w.end) for w in windows).subquery()
    stmt = select(*union.c).order_by(union.c[INDEX], union.c.ts.desc())
    df = frame(session, stmt, [INDEX, "replica", "ts", "lag_s"])
    return [
        _replica_lag_value(_max_lag(list(part.itertuples(index=False))), env)
        for part in split(df, len(windows))
    ]


def _replica_lag_value(lag: float | None, env: str) -> MetricValue:
    if lag is None:
        return MetricValue(None, 0, f"no lag sample from {env} in the last 15 min of the window")
    return MetricValue(lag, 1, f"{env}: {lag:.0f} s")


@dataclass
class RunDetail:
    """One run with everything the Failover page and `/api/failover/runs/<key>` show.

    `rto_s` is `started → writable` once writable, else None; `elapsed_s` runs against ``now``
    while the run is open (the live RTO clock). `rpo_s` is the lag at `started` (0 for a
    switchover); `lag` holds the samples of the minutes before promotion.
    """

    run_key: str
    environment: str
    kind: str
    source: str
    started_at: datetime
    ended_at: datetime | None
    notes: str
    phases: dict[str, datetime]
    rto_s: float | None
    rpo_s: float | None
    elapsed_s: float
    events: pd.DataFrame
    lag: pd.DataFrame
    in_progress: bool
    rto_target_s: float = RTO_TARGET_S
    rpo_target_s: float = RPO_TARGET_S
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (timestamps as ISO 8601 UTC)."""

        def iso(value: Any) -> str | None:
            if value is None or value is pd.NaT:
                return None
            return str(pd.Timestamp(value).tz_convert("UTC").isoformat()).replace("+00:00", "Z")

        return {
            "id": self.run_key,
            "environment": self.environment,
            "kind": self.kind,
            "source": self.source,
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "in_progress": self.in_progress,
            "notes": self.notes,
            "phases": {p: iso(self.phases.get(p)) for p in FAILOVER_PHASES},
            "rto_s": self.rto_s,
            "rto_target_s": self.rto_target_s,
            "rpo_s": self.rpo_s,
            "rpo_target_s": self.rpo_target_s,
            "elapsed_s": self.elapsed_s,
            "events": [
                {"at": iso(r.at), "phase": r.phase, "source": r.source, "message": r.message}
                for r in self.events.itertuples()
            ],
            "lag": [
                {"at": iso(r.ts), "replica": r.replica, "lag_s": r.lag_s}
                for r in self.lag.itertuples()
            ],
        }


def lag_frame(
    session: Session, *, environment: str, start: datetime, end: datetime, limit: int = 2000
) -> pd.DataFrame:
    """Replication-lag samples in [start, end]. Columns: ts, replica, lag_s."""
    stmt = (
        select(ReplicationLagSample.ts, ReplicationLagSample.replica, ReplicationLagSample.lag_s)
        .where(
            ReplicationLagSample.environment == environment,
            ReplicationLagSample.ts >= start,
            ReplicationLagSample.ts <= end,
        )
        .order_by(ReplicationLagSample.ts)
        .limit(limit)
    )
    return frame(session, stmt, ["ts", "replica", "lag_s"])


def get_run(session: Session, run_key: str, *, now: datetime) -> RunDetail | None:
    """One run with phases, RTO/RPO, events and the lag before promotion; None if unknown."""
    run = session.scalars(select(FailoverRun).where(FailoverRun.run_key == run_key)).first()
    if run is None:
        return None
    return _detail(session, run, now=now)


def _detail(session: Session, run: FailoverRun, *, now: datetime) -> RunDetail:
    phases = phase_times(session, run.run_key)
    started = phases.get("started", run.started_at)
    writable = phases.get("writable")
    promoted = phases.get("promoted")
    rto = (writable - started).total_seconds() if writable else None
    rpo = (
        0.0
        if run.kind == "switchover"
        else lag_at(session, environment=run.environment, at=started)
    )
    end = run.ended_at or now
    lag_end = promoted or end
    lag = lag_frame(
        session,
        environment=run.environment,
        start=started - LAG_BEFORE_PROMOTION,
        end=lag_end,
    )
    return RunDetail(
        run_key=run.run_key,
        environment=run.environment,
        kind=run.kind,
        source=run.source,
        started_at=run.started_at,
        ended_at=run.ended_at,
        notes=run.notes,
        phases=phases,
        rto_s=rto,
        rpo_s=rpo,
        elapsed_s=max(0.0, ((writable or end) - started).total_seconds()),
        events=events_frame(session, run_key=run.run_key),
        lag=lag,
        in_progress=run.ended_at is None,
    )


def live_run(
    session: Session, *, now: datetime, environment: str | None = None
) -> RunDetail | None:
    """The run in progress, else the most recent one (what the live page shows)."""
    stmt = select(FailoverRun).order_by(
        FailoverRun.ended_at.is_not(None), FailoverRun.started_at.desc()
    )
    if environment:
        stmt = stmt.where(FailoverRun.environment == environment)
    run = session.scalars(stmt.limit(1)).first()
    return _detail(session, run, now=now) if run else None


def list_runs(
    session: Session, *, limit: int = 100, environment: str | None = None
) -> pd.DataFrame:
    """The newest runs first with phase times, RTO and RPO; see RUN_COLUMNS."""
    stmt = select(FailoverRun.started_at).order_by(FailoverRun.started_at.desc()).limit(limit)
    if environment:
        stmt = stmt.where(FailoverRun.environment == environment)
    starts = list(session.scalars(stmt))
    if not starts:
        return pd.DataFrame([], columns=RUN_COLUMNS)
    window = Window(min(starts), max(starts) + timedelta(seconds=1))
    runs = runs_frame(session, window=window, environment=environment)
    return runs.sort_values("started_at", ascending=False, ignore_index=True)


@dataclass(frozen=True)
class Freshness:
    """When the failover sources last reported, and the last failure since then."""

    last_ok_at: datetime | None
    last_sample_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None


def freshness(session: Session, *, environment: str) -> Freshness:
    """Last successful collector run, newest lag sample and newest failure (for stale-since)."""
    ok = session.scalar(
        select(func.max(SyncRun.finished_at)).where(
            SyncRun.source.in_(FAILOVER_SOURCES), SyncRun.status == "ok"
        )
    )
    sample = session.scalar(
        select(func.max(ReplicationLagSample.ts)).where(
            ReplicationLagSample.environment == environment
        )
    )
    failed = session.execute(
        select(SyncRun.error, SyncRun.finished_at)
        .where(SyncRun.source.in_(FAILOVER_SOURCES), SyncRun.status == "failed")
        .order_by(SyncRun.id.desc())
        .limit(1)
    ).first()
    error, error_at = (failed[0], failed[1]) if failed else (None, None)
    if error_at is not None and ok is not None and ok > error_at:
        error, error_at = None, None
    return Freshness(ok, sample, error, error_at)


# --------------------------------------------------------------------------------------------
# Runbook runs (issue 19): the Runbooks page and `quarterdeck runbooks status`
# --------------------------------------------------------------------------------------------

RUNBOOK_RUN_FIELDS = (
    "run_id",
    "runbook",
    "mode",
    "environment",
    "status",
    "requested_by",
    "reason",
    "plan_id",
    "failover_run_key",
    "current_step",
    "steps",
    "rollback",
    "message",
    "rto_s",
    "rpo_s",
    "started_at",
    "updated_at",
    "finished_at",
)


def _runbook_row(run: Any) -> dict[str, Any]:
    return {name: getattr(run, name) for name in RUNBOOK_RUN_FIELDS}


def runbook_runs(
    session: Session, *, runbook: str | None = None, limit: int = 25
) -> list[dict[str, Any]]:
    """The newest runbook runs first (every field of RUNBOOK_RUN_FIELDS), at most ``limit``."""
    from store.models.runbooks import RunbookRun

    stmt = select(RunbookRun).order_by(RunbookRun.started_at.desc(), RunbookRun.id.desc())
    if runbook:
        stmt = stmt.where(RunbookRun.runbook == runbook)
    return [_runbook_row(r) for r in session.scalars(stmt.limit(limit))]


def runbook_run(session: Session, run_id: str) -> dict[str, Any] | None:
    """One runbook run by id, or None."""
    from store.models.runbooks import RunbookRun

    run = session.scalar(select(RunbookRun).where(RunbookRun.run_id == run_id))
    return _runbook_row(run) if run is not None else None
