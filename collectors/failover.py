"""Failover runs as a source: RDS/Aurora events, replication-lag probes, and manual drill marks.

RDS events have no stable event id, so messages are matched with tolerant patterns (real
messages vary, e.g. "Completed RDS initiated failover to DB instance: …"). An event joins the
open run of its environment if one started within `RUN_JOIN_WINDOW`; otherwise a "Started …"
event opens a new run.

The PostgreSQL probe is stateless between ticks except for its cursor (the standby's last seen
role, kept on the probe's `sync_runs` row): a standby seen in recovery and then out of it is a
promotion, observed at the first tick that sees it. Connections are made by callables the
composition root passes in (psycopg there, not here); a node that cannot be reached is recorded
as the run's error while the other node's observations are still stored.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from collectors.base import InvalidItem, parse_time
from store.db import session_scope
from store.ingest import IngestResult, record_sync_run, upsert, utcnow
from store.models import (
    FAILOVER_PHASES,
    DnsWeightObservation,
    FailoverEvent,
    FailoverRun,
    ReplicationLagSample,
    SyncRun,
)

log = logging.getLogger(__name__)
SOURCE_RDS = "failover.rds"
SOURCE_PROBE = "failover.probe"

SOURCE = "failover"
RUN_JOIN_WINDOW = timedelta(hours=2)

_RDS_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (
        "started",
        re.compile(r"^Started .*failover|failover started|Global failover .*started", re.I),
    ),
    (
        "promoted",
        re.compile(r"^Completed .*failover|failover .*complete|new primary .*promoted", re.I),
    ),
    ("complete", re.compile(r"^Global (failover|switchover) .*(finished|completed)", re.I)),
]


def classify_rds_message(message: str) -> str | None:
    """Return the failover phase an RDS event message marks, or None for other events."""
    for phase, pattern in reversed(_RDS_PATTERNS):
        if pattern.search(message):
            return phase
    return None


def _open_run(session: Session, environment: str, at: datetime) -> FailoverRun | None:
    return session.scalars(
        select(FailoverRun)
        .where(FailoverRun.environment == environment)
        .where(FailoverRun.started_at <= at)
        .where(FailoverRun.started_at >= at - RUN_JOIN_WINDOW)
        .where((FailoverRun.ended_at.is_(None)) | (FailoverRun.ended_at >= at))
        .order_by(FailoverRun.started_at.desc())
        .limit(1)
    ).first()


def start_run(
    session: Session, *, environment: str, at: datetime, kind: str, source: str, notes: str = ""
) -> str:
    """Open a failover run (or return the run already keyed for this moment); returns its key."""
    run_key = f"{environment}-{kind}-{at.strftime('%Y%m%dT%H%M%SZ')}"
    upsert(
        session,
        FailoverRun,
        [
            {
                "run_key": run_key,
                "environment": environment,
                "kind": kind,
                "source": source,
                "started_at": at,
                "ended_at": None,
                "notes": notes,
            }
        ],
        conflict=("run_key",),
    )
    mark_phase(
        session,
        run_key=run_key,
        phase="started",
        at=at,
        source=source,
        message=notes or f"{kind} started",
    )
    return run_key


def open_run(
    session: Session,
    *,
    environment: str,
    at: datetime,
    kind: str,
    source: str,
    notes: str,
    suffix: str = "",
) -> str:
    """Open a run whose `started` phase comes later (a runbook marks it at promotion).

    Until then the Failover page counts its clock from ``at``; the run's RTO and RPO are
    measured from the `started` mark once it exists. ``suffix`` keeps two runs opened in the
    same second apart (a runbook passes its run id).
    """
    run_key = f"{environment}-{kind}-{at.strftime('%Y%m%dT%H%M%SZ')}"
    if suffix:
        run_key += f"-{suffix}"
    upsert(
        session,
        FailoverRun,
        [
            {
                "run_key": run_key,
                "environment": environment,
                "kind": kind,
                "source": source,
                "started_at": at,
                "ended_at": None,
                "notes": notes,
            }
        ],
        conflict=("run_key",),
    )
    mark_phase(session, run_key=run_key, phase=None, at=at, source=source, message=notes)
    return run_key


def end_run(session: Session, *, run_key: str, at: datetime, source: str, message: str) -> None:
    """Close a run that did not complete (aborted or failed) with a last log line."""
    mark_phase(session, run_key=run_key, phase=None, at=at, source=source, message=message)
    run = session.scalars(select(FailoverRun).where(FailoverRun.run_key == run_key)).one()
    if run.ended_at is None:
        run.ended_at = at


def mark_phase(
    session: Session, *, run_key: str, phase: str | None, at: datetime, source: str, message: str
) -> IngestResult:
    """Record a phase (or, with ``phase=None``, a log line) of a run; `complete` closes it."""
    if phase is not None and phase not in FAILOVER_PHASES:
        raise InvalidItem(f"phase {phase!r} is not one of {', '.join(FAILOVER_PHASES)}")
    run = session.scalars(select(FailoverRun).where(FailoverRun.run_key == run_key)).first()
    if run is None:
        raise InvalidItem(f"no failover run {run_key!r}")
    result = IngestResult()
    result.add(
        upsert(
            session,
            FailoverEvent,
            [
                {
                    "run_key": run_key,
                    "phase": phase,
                    "at": at,
                    "source": source,
                    "message": message[:1000],
                }
            ],
            conflict=("run_key", "at", "phase", "message"),
        )
    )
    if phase == "complete" and (run.ended_at is None or run.ended_at < at):
        run.ended_at = at
    return result


def ingest_rds_events(
    session: Session, events: list[dict[str, Any]], *, environment: str
) -> IngestResult:
    """Attach `DescribeEvents` failover events to runs of ``environment``, opening new runs."""
    result = IngestResult()
    for event in sorted(events, key=lambda e: parse_time(e.get("Date"), field="Date")):
        message = str(event.get("Message") or "")
        phase = classify_rds_message(message)
        categories = {c.lower() for c in event.get("EventCategories") or []}
        if phase is None and not categories & {"failover", "global failover"}:
            result.ignored += 1
            continue
        at = parse_time(event.get("Date"), field="Date")
        source_id = str(event.get("SourceIdentifier") or "rds")
        run = _open_run(session, environment, at)
        if run is None:
            if phase != "started":
                result.ignored += 1
                continue
            start_run(
                session,
                environment=environment,
                at=at,
                kind="failover",
                source="rds",
                notes=f"{source_id}: {message}",
            )
            result.stored += 1
            continue
        result.merge(
            mark_phase(
                session,
                run_key=run.run_key,
                phase=phase,
                at=at,
                source="rds",
                message=f"{source_id}: {message}",
            )
        )
    return result


def transform_replication_rows(
    rows: list[dict[str, Any]], *, environment: str, observed_at: datetime
) -> list[dict[str, Any]]:
    """Map `pg_stat_replication` rows (primary side) to lag samples: `replay_lag` in seconds.

    A NULL `replay_lag` on an idle primary means the standby is caught up: recorded as 0.
    """
    samples = []
    for row in rows:
        lag = row.get("replay_lag")
        if isinstance(lag, timedelta):
            seconds = lag.total_seconds()
        elif lag is None:
            seconds = 0.0
        else:
            seconds = float(lag)
        samples.append(
            {
                "environment": environment,
                "replica": str(row.get("application_name") or row.get("client_addr") or "standby"),
                "ts": observed_at,
                "lag_s": seconds,
            }
        )
    return samples


def load_lag_samples(session: Session, rows: list[dict[str, Any]]) -> IngestResult:
    """Upsert replication-lag samples."""
    result = IngestResult()
    result.add(
        upsert(
            session,
            ReplicationLagSample,
            rows,
            conflict=("environment", "replica", "ts"),
            update=("lag_s",),
        )
    )
    return result


# --------------------------------------------------------------------------------------------
# Runs: current run, drill marks, traffic shift from Route53 weights
# --------------------------------------------------------------------------------------------


def current_run(
    session: Session, environment: str, *, now: datetime | None = None
) -> FailoverRun | None:
    """The newest run of ``environment`` that has not ended and started within the window
    before ``now`` (default: the wall clock)."""
    at = now or utcnow()
    return session.scalars(
        select(FailoverRun)
        .where(FailoverRun.environment == environment, FailoverRun.ended_at.is_(None))
        .where(FailoverRun.started_at >= at - RUN_JOIN_WINDOW)
        .order_by(FailoverRun.started_at.desc())
        .limit(1)
    ).first()


def _phases(session: Session, run_key: str) -> set[str]:
    return {
        str(p)
        for p in session.scalars(
            select(FailoverEvent.phase).where(
                FailoverEvent.run_key == run_key, FailoverEvent.phase.is_not(None)
            )
        )
    }


def detect_traffic_shift(session: Session, run: FailoverRun, *, records: Sequence[str]) -> bool:
    """Mark `traffic_shifted` at the first Route53 snapshot after the run's start whose weights
    differ from the weights in force when it started; returns whether the phase was marked."""
    if not records or "traffic_shifted" in _phases(session, run.run_key):
        return False
    names = [n.rstrip(".").lower() + "." for n in records]
    obs = session.execute(
        select(
            DnsWeightObservation.observed_at,
            DnsWeightObservation.record_name,
            DnsWeightObservation.set_identifier,
            DnsWeightObservation.weight,
            DnsWeightObservation.gone,
        )
        .where(DnsWeightObservation.record_name.in_(names))
        .where(DnsWeightObservation.observed_at >= run.started_at - timedelta(days=2))
        .order_by(DnsWeightObservation.observed_at)
    ).all()
    before: dict[tuple[str, str], int] = {}
    for at, name, ident, weight, gone in obs:
        key = (str(name), str(ident))
        value = 0 if gone else int(weight)
        if at <= run.started_at:
            before[key] = value
        elif key in before and before[key] != value:
            mark_phase(
                session,
                run_key=run.run_key,
                phase="traffic_shifted",
                at=at,
                source="route53",
                message=f"{name} {ident}: weight {before[key]} → {value}",
            )
            return True
    return False


def _maybe_complete(session: Session, run: FailoverRun, at: datetime) -> None:
    """A run whose measured phases are all reached completes at the last of them."""
    if {"writable", "traffic_shifted"} <= _phases(session, run.run_key) and run.ended_at is None:
        mark_phase(
            session,
            run_key=run.run_key,
            phase="complete",
            at=at,
            source="probe",
            message="promoted, writable and traffic shifted",
        )


# --------------------------------------------------------------------------------------------
# RDS / Aurora events
# --------------------------------------------------------------------------------------------


def fetch_rds_events(
    client: Any,
    *,
    start: datetime,
    end: datetime,
    source_type: str | None = None,
    source_identifier: str | None = None,
) -> list[dict[str, Any]]:
    """`DescribeEvents` (paginated by Marker) between ``start`` and ``end``.

    RDS keeps events for 14 days only, and a `SourceIdentifier` needs its `SourceType`.
    """
    params: dict[str, Any] = {"StartTime": start, "EndTime": end}
    if source_identifier:
        if not source_type:
            raise ValueError("source_identifier needs source_type")
        params["SourceIdentifier"] = source_identifier
    if source_type:
        params["SourceType"] = source_type
    events: list[dict[str, Any]] = []
    for page in client.get_paginator("describe_events").paginate(**params):
        events.extend(page.get("Events") or [])
    return events


def sync_rds(
    factory: sessionmaker[Session],
    client: Any,
    *,
    environment: str,
    sources: Sequence[tuple[str, str]] = (),
    lookback: timedelta = timedelta(hours=6),
    now: datetime | None = None,
    records: Sequence[str] = (),
) -> IngestResult:
    """Attach new RDS failover events to runs; the cursor is the end of the last fetched range.

    ``sources`` are `(SourceType, SourceIdentifier)` pairs; empty means every source.
    """
    started = utcnow()
    end = now or started
    result = IngestResult()
    with session_scope(factory) as session:
        cursor = _last_cursor(session, SOURCE_RDS)
    begin = max(
        datetime.fromisoformat(cursor) if cursor else end - lookback, end - timedelta(days=14)
    )
    try:
        events: list[dict[str, Any]] = []
        for source_type, source_id in sources or [(None, None)]:  # type: ignore[list-item]
            events.extend(
                fetch_rds_events(
                    client,
                    start=begin,
                    end=end,
                    source_type=source_type,
                    source_identifier=source_id,
                )
            )
        with session_scope(factory) as session:
            result.merge(ingest_rds_events(session, events, environment=environment))
            run = current_run(session, environment, now=end)
            if run is not None:
                detect_traffic_shift(session, run, records=records)
    except Exception as exc:
        log.warning("rds events sync failed: %s", exc)
        with session_scope(factory) as session:
            record_sync_run(
                session,
                source=SOURCE_RDS,
                started_at=started,
                result=result,
                error=str(exc),
                cursor=cursor,
            )
        raise
    with session_scope(factory) as session:
        record_sync_run(
            session, source=SOURCE_RDS, started_at=started, result=result, cursor=end.isoformat()
        )
    return result


def _last_cursor(session: Session, source: str) -> str | None:
    return session.scalar(
        select(SyncRun.cursor)
        .where(SyncRun.source == source, SyncRun.cursor.is_not(None))
        .order_by(SyncRun.id.desc())
        .limit(1)
    )


# --------------------------------------------------------------------------------------------
# PostgreSQL replication probe
# --------------------------------------------------------------------------------------------

Connect = Callable[[], Any]
"""Returns a DB-API connection (psycopg) to one node; the probe closes it."""

PRIMARY_SQL = """
SELECT application_name, client_addr::text AS client_addr, state, replay_lag,
       pg_wal_lsn_diff(sent_lsn, replay_lsn) AS replay_bytes
FROM pg_stat_replication
"""
STANDBY_SQL = "SELECT pg_is_in_recovery(), pg_last_xact_replay_timestamp(), now()"
PROBE_TABLE_SQL = """
CREATE TABLE IF NOT EXISTS quarterdeck_failover_probe (
    id bigserial PRIMARY KEY,
    written_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    note text NOT NULL
)
"""
PROBE_WRITE_SQL = "INSERT INTO quarterdeck_failover_probe (note) VALUES (%s) RETURNING written_at"


def fetch_primary_replication(connect: Connect) -> list[dict[str, Any]]:
    """`pg_stat_replication` on the primary: one row per connected standby."""
    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute(PRIMARY_SQL)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        conn.close()


@dataclass(frozen=True)
class StandbyState:
    """What the standby said: still replaying, or promoted (and since when it replayed last)."""

    in_recovery: bool
    last_replay: datetime | None
    server_now: datetime


def fetch_standby_state(connect: Connect) -> StandbyState:
    """`pg_is_in_recovery()`, `pg_last_xact_replay_timestamp()` and `now()` on the standby."""
    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute(STANDBY_SQL)
            in_recovery, last_replay, server_now = cur.fetchone()
        return StandbyState(bool(in_recovery), last_replay, server_now)
    finally:
        conn.close()


def probe_write(connect: Connect, note: str) -> datetime:
    """Commit one row on the (new) primary; returns the server's time of the write.

    A read-only standby refuses it (`cannot execute INSERT in a read-only transaction`), so the
    first success after promotion is the moment the node accepts writes.
    """
    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute(PROBE_TABLE_SQL)
            cur.execute(PROBE_WRITE_SQL, (note[:200],))
            (written_at,) = cur.fetchone()
        conn.commit()
        if not isinstance(written_at, datetime):
            raise InvalidItem(f"probe write returned {written_at!r}, not a timestamp")
        return written_at.astimezone(UTC)
    finally:
        conn.close()


@dataclass
class ProbeReport:
    """One probe tick: what each node said and which phases it marked."""

    observed_at: datetime
    lag_samples: int = 0
    standby_role: str | None = None  # recovery | primary | None (unreachable)
    marked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    run_key: str | None = None


def probe_tick(
    factory: sessionmaker[Session],
    *,
    environment: str,
    primary: Connect | None,
    standby: Connect | None,
    records: Sequence[str] = (),
    clock: Callable[[], datetime] = utcnow,
) -> ProbeReport:
    """Observe both nodes once, store lag, and mark `promoted`/`writable` on the current run.

    A standby seen in recovery at the previous tick and out of it now is a promotion: when no
    run is open (no drill mark, no RDS event) the probe opens one, starting at the previous
    tick, the last moment the old topology was known to hold. Unreachable nodes are recorded
    as the tick's error; the cursor keeps the standby's last known role.
    """
    started = utcnow()
    report = ProbeReport(observed_at=clock())
    primary_rows: list[dict[str, Any]] = []
    state: StandbyState | None = None
    if primary is not None:
        try:
            primary_rows = fetch_primary_replication(primary)
        except Exception as exc:
            report.errors.append(f"primary unreachable: {type(exc).__name__}: {exc}".strip())
    if standby is not None:
        try:
            state = fetch_standby_state(standby)
            report.standby_role = "recovery" if state.in_recovery else "primary"
        except Exception as exc:
            report.errors.append(f"standby unreachable: {type(exc).__name__}: {exc}".strip())
    result = IngestResult()
    with session_scope(factory) as session:
        previous = _probe_cursor(session)
        samples = transform_replication_rows(
            primary_rows, environment=environment, observed_at=report.observed_at
        )
        result.merge(load_lag_samples(session, samples))
        report.lag_samples = len(samples)
        run = current_run(session, environment, now=report.observed_at)
        promoted_now = report.standby_role == "primary"
        transition = promoted_now and previous.get("standby") == "recovery"
        if run is None and transition:
            since = previous.get("at")
            key = start_run(
                session,
                environment=environment,
                at=datetime.fromisoformat(since) if since else report.observed_at,
                kind="failover",
                source="probe",
                notes="standby left recovery (promotion seen by the probe)",
            )
            run = session.scalars(select(FailoverRun).where(FailoverRun.run_key == key)).one()
            report.marked.append("started")
        if run is not None:
            report.run_key = run.run_key
            phases = _phases(session, run.run_key)
            if promoted_now and "promoted" not in phases:
                mark_phase(
                    session,
                    run_key=run.run_key,
                    phase="promoted",
                    at=report.observed_at,
                    source="probe",
                    message=(
                        "standby out of recovery (pg_is_in_recovery() = false); "
                        f"last seen in recovery at {previous.get('at', 'unknown')}"
                    ),
                )
                report.marked.append("promoted")
            for line in report.errors:
                mark_phase(
                    session,
                    run_key=run.run_key,
                    phase=None,
                    at=report.observed_at,
                    source="probe",
                    message=line,
                )
    if report.standby_role == "primary" and report.run_key and standby is not None:
        with session_scope(factory) as session:
            needs_write = "writable" not in _phases(session, report.run_key)
        if needs_write:
            try:
                written = probe_write(standby, f"failover probe {report.run_key}")
            except Exception as exc:
                report.errors.append(f"probe write failed: {type(exc).__name__}: {exc}".strip())
            else:
                with session_scope(factory) as session:
                    mark_phase(
                        session,
                        run_key=report.run_key,
                        phase="writable",
                        at=written,
                        source="probe",
                        message="probe write committed on the new primary",
                    )
                report.marked.append("writable")
    if report.run_key:
        with session_scope(factory) as session:
            run = session.scalars(
                select(FailoverRun).where(FailoverRun.run_key == report.run_key)
            ).one()
            if detect_traffic_shift(session, run, records=records):
                report.marked.append("traffic_shifted")
            _maybe_complete(session, run, report.observed_at)
    cursor = dict(previous)
    if report.standby_role is not None:
        cursor = {"standby": report.standby_role, "at": report.observed_at.isoformat()}
    result.stored += len(report.marked)
    with session_scope(factory) as session:
        record_sync_run(
            session,
            source=SOURCE_PROBE,
            started_at=started,
            result=result,
            error="; ".join(report.errors) or None,
            cursor=json.dumps(cursor, sort_keys=True),
        )
    return report


def _probe_cursor(session: Session) -> dict[str, str]:
    text = _last_cursor(session, SOURCE_PROBE)
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
