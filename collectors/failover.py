"""Failover runs as a source: RDS/Aurora events, replication-lag probes, and manual drill marks.

RDS events have no stable event id, so messages are matched with tolerant patterns (real
messages vary, e.g. "Completed RDS initiated failover to DB instance: …"). An event joins the
open run of its environment if one started within `RUN_JOIN_WINDOW`; otherwise a "Started …"
event opens a new run.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collectors.base import InvalidItem, parse_time
from store.ingest import IngestResult, upsert
from store.models import FAILOVER_PHASES, FailoverEvent, FailoverRun, ReplicationLagSample

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
