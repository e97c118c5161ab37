"""Retention and rollups at scale: day partitions on PostgreSQL, batched deletes on SQLite.

* `traffic_samples` is partitioned by day on PostgreSQL (migration 0012).
  :func:`ensure_day_partitions` creates `traffic_samples_pYYYYMMDD` for the days that have rows
  (moving them out of the DEFAULT partition) and a few days ahead; :func:`drop_partitions_before`
  retires whole days with `DROP TABLE`, which costs the same for ten rows or ten million.
* `opa_decisions` keeps its global `decision_id` key (OPA re-sends chunks; the collector's
  `ON CONFLICT (decision_id)` needs a unique index PostgreSQL cannot give a partitioned table),
  so its retention deletes in index-backed batches by `timestamp` on both dialects, after
  :func:`rollup_decisions` has folded the days into `opa_decision_daily`.
* On SQLite every table's retention is a delete in batches of ``batch`` rows (short write locks).
* `traffic_rollups` (hourly) are pruned too, at their own, longer retention.

Charts over long windows read `opa_decision_daily` (:func:`decision_daily`) and the hourly
traffic rollups, so the retained range is answered without touching raw rows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, delete, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from store.models import OpaDecision, TrafficSample
from store.models.scale import DecisionDaily
from store.models.traffic import TrafficRollup

DAY = timedelta(days=1)
_PARTITION = re.compile(r"^(?P<table>[a-z_]+)_p(?P<day>\d{8})$")


def day_floor(at: datetime) -> datetime:
    """Midnight UTC of ``at``'s day."""
    at = at.astimezone(UTC)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class RetentionReport:
    """What one maintenance pass did."""

    partitions_created: list[str] = field(default_factory=list)
    partitions_dropped: list[str] = field(default_factory=list)
    rows_deleted: dict[str, int] = field(default_factory=dict)
    rollup_rows: int = 0

    def line(self) -> str:
        deleted = ", ".join(f"{k} {v}" for k, v in self.rows_deleted.items() if v) or "none"
        return (
            f"partitions +{len(self.partitions_created)} -{len(self.partitions_dropped)}"
            f" ({', '.join(self.partitions_dropped) or 'none dropped'}); rows deleted: {deleted};"
            f" decision rollup rows {self.rollup_rows}"
        )


# -- PostgreSQL day partitions ----------------------------------------------------------------


def is_partitioned(conn: Connection, table: str) -> bool:
    """Whether ``table`` (in the current search path) is a declaratively partitioned table."""
    if conn.dialect.name != "postgresql":
        return False
    found = conn.execute(
        text(
            "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
            "WHERE c.oid = to_regclass(:t)"
        ),
        {"t": table},
    ).first()
    return found is not None


def day_partitions(conn: Connection, table: str) -> dict[str, datetime]:
    """The day partitions of ``table``: name → first day covered."""
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": table},
    ).scalars()
    found: dict[str, datetime] = {}
    for name in rows:
        match = _PARTITION.match(str(name))
        if match and match["table"] == table:
            found[str(name)] = datetime.strptime(match["day"], "%Y%m%d").replace(tzinfo=UTC)
    return found


def ensure_day_partitions(
    conn: Connection, table: str, column: str, *, now: datetime, ahead_days: int = 3
) -> list[str]:
    """Create day partitions for every day with rows in DEFAULT and ``ahead_days`` ahead.

    Rows already in the DEFAULT partition are moved: the new day table is filled first and
    attached after (PostgreSQL refuses to attach a range the DEFAULT partition still holds).
    """
    if not is_partitioned(conn, table):
        return []
    existing = set(day_partitions(conn, table))
    default = f"{table}_default"
    days = {
        day_floor(d)
        for d in conn.execute(
            text(f"SELECT DISTINCT date_trunc('day', {column} AT TIME ZONE 'UTC') FROM {default}")
        ).scalars()
        if d is not None
        for d in [d.replace(tzinfo=UTC)]
    }
    today = day_floor(now)
    days |= {today + DAY * i for i in range(ahead_days + 1)}
    created: list[str] = []
    for day in sorted(days):
        name = f"{table}_p{day:%Y%m%d}"
        if name in existing:
            continue
        lo, hi = day.isoformat(), (day + DAY).isoformat()
        conn.execute(text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS)"))
        conn.execute(
            text(
                f"WITH moved AS (DELETE FROM {default} WHERE {column} >= :lo AND {column} < :hi "
                f"RETURNING *) INSERT INTO {name} SELECT * FROM moved"
            ),
            {"lo": lo, "hi": hi},
        )
        conn.execute(
            text(
                f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ('{lo}') TO ('{hi}')"
            )
        )
        created.append(name)
    return created


def drop_partitions_before(conn: Connection, table: str, *, before: datetime) -> list[str]:
    """Drop the day partitions that end at or before ``before`` (whole days only)."""
    dropped: list[str] = []
    for name, day in sorted(day_partitions(conn, table).items(), key=lambda kv: kv[1]):
        if day + DAY <= before:
            conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {name}"))
            conn.execute(text(f"DROP TABLE {name}"))
            dropped.append(name)
    return dropped


# -- batched deletes (SQLite, and unpartitioned tables on PostgreSQL) --------------------------


def delete_before(
    session: Session, model: Any, column: Any, *, before: datetime, batch: int = 5000
) -> int:
    """Delete rows with ``column < before`` in batches of ``batch`` ids; commit after each."""
    total = 0
    while True:
        ids = (
            session.execute(select(model.id).where(column < before).order_by(column).limit(batch))
            .scalars()
            .all()
        )
        if not ids:
            return total
        session.execute(delete(model).where(model.id.in_(ids)))
        session.commit()
        total += len(ids)


# -- decision rollups ---------------------------------------------------------------------------


def rollup_decisions(session: Session, *, since: datetime, until: datetime) -> int:
    """Recompute `opa_decision_daily` for the UTC days from ``since`` to ``until`` (idempotent).

    One grouped query per day over the `timestamp` index; re-running a day replaces its rows.
    """
    dialect = session.get_bind().dialect.name
    ctor: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    written = 0
    day = day_floor(since)
    while day < until:
        rows = session.execute(
            select(
                OpaDecision.environment,
                OpaDecision.path,
                func.count(),
                func.sum(case((OpaDecision.allowed.is_(True), 1), else_=0)),
                func.sum(case((OpaDecision.allowed.is_(False), 1), else_=0)),
                func.sum(case((OpaDecision.allowed.is_(None), 1), else_=0)),
                func.sum(case((OpaDecision.dry_run.is_(True), 1), else_=0)),
            )
            .where(OpaDecision.timestamp >= day, OpaDecision.timestamp < day + DAY)
            .group_by(OpaDecision.environment, OpaDecision.path)
        ).all()
        merged: dict[tuple[str, str], list[int]] = {}
        for env, path, *counts in rows:  # NULL and '' environments share one rollup row
            into = merged.setdefault((env or "", path), [0, 0, 0, 0, 0])
            for i, n in enumerate(counts):
                into[i] += int(n or 0)
        values = [
            {
                "day": day,
                "environment": env,
                "path": path,
                "decisions": n,
                "allowed": a,
                "denied": d,
                "undecided": u,
                "dry_run": r,
            }
            for (env, path), (n, a, d, u, r) in merged.items()
        ]
        if values:
            stmt = ctor(DecisionDaily).values(values)
            stmt = stmt.on_conflict_do_update(
                index_elements=["day", "environment", "path"],
                set_={
                    c: stmt.excluded[c]
                    for c in ("decisions", "allowed", "denied", "undecided", "dry_run")
                },
            )
            session.execute(stmt)
            written += len(values)
        day += DAY
    return written


def decision_daily(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    paths: Sequence[str] | None = None,
    environment: str | None = None,
) -> list[DecisionDaily]:
    """Daily decision counts for a chart over a long window (reads only the rollups)."""
    stmt = select(DecisionDaily).where(
        DecisionDaily.day >= day_floor(since), DecisionDaily.day < until
    )
    if paths:
        stmt = stmt.where(DecisionDaily.path.in_(list(paths)))
    if environment is not None:
        stmt = stmt.where(DecisionDaily.environment == environment)
    return list(session.execute(stmt.order_by(DecisionDaily.day, DecisionDaily.path)).scalars())


# -- the maintenance pass -----------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each kind of row is kept (days)."""

    decisions_days: int = 30
    samples_days: int = 30
    traffic_rollups_days: int = 400
    decision_rollups_days: int = 730
    ahead_days: int = 3
    batch: int = 5000


def maintain(session: Session, *, now: datetime, policy: RetentionPolicy) -> RetentionReport:
    """Roll up decisions, make partitions, then retire what is past retention.

    Decisions are rolled up from the last rolled-up day (or the cutoff) to now before any raw row
    is deleted, so a day is never lost from the charts.
    """
    report = RetentionReport()
    decisions_cutoff = day_floor(now) - DAY * policy.decisions_days
    newest = session.execute(select(func.max(DecisionDaily.day))).scalar_one_or_none()
    oldest_raw = session.execute(select(func.min(OpaDecision.timestamp))).scalar_one_or_none()
    start = newest if newest is not None else oldest_raw
    if start is not None:
        report.rollup_rows = rollup_decisions(session, since=start, until=now)
    session.commit()

    samples_cutoff = day_floor(now) - DAY * policy.samples_days
    conn = session.connection()
    if is_partitioned(conn, TrafficSample.__tablename__):
        report.partitions_created = ensure_day_partitions(
            conn, TrafficSample.__tablename__, "ts", now=now, ahead_days=policy.ahead_days
        )
        report.partitions_dropped = drop_partitions_before(
            conn, TrafficSample.__tablename__, before=samples_cutoff
        )
        session.commit()
    # Rows in DEFAULT (or any row on SQLite) past the cutoff go by batched delete.
    report.rows_deleted["traffic_samples"] = delete_before(
        session, TrafficSample, TrafficSample.ts, before=samples_cutoff, batch=policy.batch
    )
    report.rows_deleted["opa_decisions"] = delete_before(
        session, OpaDecision, OpaDecision.timestamp, before=decisions_cutoff, batch=policy.batch
    )
    report.rows_deleted["traffic_rollups"] = delete_before(
        session,
        TrafficRollup,
        TrafficRollup.bucket,
        before=day_floor(now) - DAY * policy.traffic_rollups_days,
        batch=policy.batch,
    )
    report.rows_deleted["opa_decision_daily"] = delete_before(
        session,
        DecisionDaily,
        DecisionDaily.day,
        before=day_floor(now) - DAY * policy.decision_rollups_days,
        batch=policy.batch,
    )
    session.commit()
    return report
