"""Leader leases in the store: one row per name, won by one atomic INSERT … ON CONFLICT.

Two replicas of a collector call :func:`acquire` with the same name; the statement takes the
row only when it is free, expired, or already held by the caller (a renewal), so exactly one
replica holds it at a time on both PostgreSQL (row lock of the upsert) and SQLite (one writer).
A crashed holder stops renewing and its lease expires after ``ttl_s``; a holder that stops
cleanly calls :func:`release` so the other replica takes over at once.

Times come from the caller's ``now`` (the `clock` of the loop); replicas' clocks must agree to
well within the TTL, which NTP gives any machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from store.models.scale import Lease


@dataclass(frozen=True)
class Held:
    """A lease as its holder sees it right after acquiring or renewing it."""

    name: str
    holder: str
    token: int
    expires_at: datetime
    last_run_at: datetime | None


def acquire(
    session: Session, name: str, holder: str, *, ttl_s: float, now: datetime
) -> Held | None:
    """Take or renew lease ``name`` for ``holder`` until ``now + ttl_s``; None if it is held."""
    dialect = session.get_bind().dialect.name
    ctor: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    expires = now + timedelta(seconds=ttl_s)
    stmt = ctor(Lease).values(
        name=name, holder=holder, token=1, acquired_at=now, expires_at=expires, last_run_at=None
    )
    same = Lease.holder == stmt.excluded.holder
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"],
        set_={
            "holder": stmt.excluded.holder,
            "token": case((same, Lease.token), else_=Lease.token + 1),
            "acquired_at": case((same, Lease.acquired_at), else_=stmt.excluded.acquired_at),
            "expires_at": stmt.excluded.expires_at,
        },
        where=(Lease.holder == holder) | (Lease.expires_at <= now),
    ).returning(Lease.token, Lease.expires_at, Lease.last_run_at)
    row = session.execute(stmt).first()
    if row is None:
        return None
    return Held(name, holder, int(row[0]), row[1], row[2])


def mark_run(session: Session, name: str, holder: str, *, at: datetime) -> bool:
    """Record that ``holder`` started a pass at ``at``; False if it no longer holds the lease."""
    result = session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.holder == holder, Lease.expires_at > at)
        .values(last_run_at=at)
    )
    return bool(getattr(result, "rowcount", 0))


def release(session: Session, name: str, holder: str, *, now: datetime) -> None:
    """Give the lease up now (kept: `last_run_at`, so the next leader still waits its interval)."""
    session.execute(
        update(Lease).where(Lease.name == name, Lease.holder == holder).values(expires_at=now)
    )


def current(session: Session, name: str) -> Lease | None:
    """The lease row as stored (holder, token, expiry, last run), or None if never taken."""
    return session.execute(select(Lease).where(Lease.name == name)).scalar_one_or_none()
