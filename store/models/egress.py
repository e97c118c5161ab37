"""Egress: export access events (token state, watermark headers)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, BigId


class ExportEvent(Base):
    """One export download as the gateway saw it: token state and watermark headers."""

    __tablename__ = "export_events"
    __table_args__ = (UniqueConstraint("event_id"), Index("ix_export_events_ts", "ts"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(100))
    export_id: Mapped[str | None] = mapped_column(String(100))
    ts: Mapped[datetime]
    user: Mapped[str | None] = mapped_column(String(200))
    tenant: Mapped[str | None] = mapped_column(String(200))
    route: Mapped[str] = mapped_column(String(500))
    status: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # valid | invalid | expired | missing | not_checked (the limiter refused before any check)
    token_state: Mapped[str] = mapped_column(String(20))
    token_scope: Mapped[str | None] = mapped_column(String(200))
    watermarked: Mapped[bool] = mapped_column(Boolean)
    # Who answered: `application` (the console or an export backend), `limiter` (NGINX
    # limit_req refused it) or `proxy` (the proxy answered itself for another reason).
    answered_by: Mapped[str] = mapped_column(
        String(20), default="application", server_default="application"
    )
    # Why a refused attempt was refused (missing_token, invalid_token, expired_token,
    # rate_limited_user, rate_limited_tenant, limiter, …); None when served.
    reason: Mapped[str | None] = mapped_column(String(40))
    # The proxy's access log carried this request (its side is in for the event's window).
    in_proxy_log: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    # Key of the proxy log line merged into this event when the line had no request id.
    proxy_key: Mapped[str | None] = mapped_column(String(100), unique=True)


class EvidencePack(Base):
    """An evidence pack built for a sprint: who built it, when, and the digest of its snapshot.

    The snapshot (section data as JSON) is kept under `var/evidence/`; every download renders
    the pack from it, watermarked and signed for that download.
    """

    __tablename__ = "evidence_packs"
    __table_args__ = (UniqueConstraint("pack_id"), Index("ix_evidence_packs_built_at", "built_at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    pack_id: Mapped[str] = mapped_column(String(100))
    sprint: Mapped[str] = mapped_column(String(100))
    built_at: Mapped[datetime]
    built_by: Mapped[str] = mapped_column(String(200))
    snapshot_sha256: Mapped[str] = mapped_column(String(64))
    snapshot_path: Mapped[str] = mapped_column(String(1000))
    key_fingerprint: Mapped[str] = mapped_column(String(100))
    files: Mapped[int] = mapped_column(Integer, default=0)
