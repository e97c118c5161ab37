"""Ops: collector runs, dead letters, the hash-chained action audit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, BigId


class SyncRun(Base):
    """One run of a collector or receiver batch: when, how many rows, and the error if any."""

    __tablename__ = "sync_runs"
    __table_args__ = (Index("ix_sync_runs_source_started_at", "source", "started_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(20))  # running | ok | partial | failed
    rows_stored: Mapped[int] = mapped_column(Integer, default=0)
    rows_duplicate: Mapped[int] = mapped_column(Integer, default=0)
    rows_rejected: Mapped[int] = mapped_column(Integer, default=0)
    cursor: Mapped[str | None] = mapped_column(String(500))
    error: Mapped[str | None] = mapped_column(Text)


class IngestReject(Base):
    """A dead-lettered item: what came in (bounded), from where, and why it was refused."""

    __tablename__ = "ingest_rejects"
    __table_args__ = (
        UniqueConstraint("source", "payload_hash", "reason"),
        Index("ix_ingest_rejects_source_received_at", "source", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime]
    item_index: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    payload_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    payload_hash: Mapped[str] = mapped_column(String(64))


class ActionAudit(Base):
    """Append-only, hash-chained audit of guarded actions (each row carries the previous hash)."""

    __tablename__ = "action_audit"
    __table_args__ = (UniqueConstraint("seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(500))
    environment: Mapped[str | None] = mapped_column(String(50))
    outcome: Mapped[str] = mapped_column(String(30))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))
