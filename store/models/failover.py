"""Failover: runs, their phases and log lines, replication lag."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Float,
    ForeignKey,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, BigId

FAILOVER_PHASES = ("started", "promoted", "writable", "traffic_shifted", "complete")
"""Phases of a failover run, in order. RTO runs from `started` to `writable`."""


class FailoverRun(Base):
    """One failover or drill in one environment."""

    __tablename__ = "failover_runs"
    __table_args__ = (UniqueConstraint("run_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_key: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(50))
    kind: Mapped[str] = mapped_column(String(20))  # drill | switchover | failover
    source: Mapped[str] = mapped_column(String(50))  # rds | probe | manual
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    notes: Mapped[str] = mapped_column(Text, default="")


class FailoverEvent(Base):
    """A timestamped phase or log line of a failover run (phases: see store.queries.failover)."""

    __tablename__ = "failover_events"
    __table_args__ = (UniqueConstraint("run_key", "at", "phase", "message"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_key: Mapped[str] = mapped_column(ForeignKey("failover_runs.run_key", ondelete="CASCADE"))
    phase: Mapped[str | None] = mapped_column(String(30))
    at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(50))
    message: Mapped[str] = mapped_column(String(1000))


class ReplicationLagSample(Base):
    """Replication lag of a standby at a moment, in seconds."""

    __tablename__ = "replication_lag_samples"
    __table_args__ = (UniqueConstraint("environment", "replica", "ts"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    environment: Mapped[str] = mapped_column(String(50))
    replica: Mapped[str] = mapped_column(String(200))
    ts: Mapped[datetime]
    lag_s: Mapped[float] = mapped_column(Float)
