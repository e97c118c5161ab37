"""Reliability: SLO samples, incidents, postmortems."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Float,
    ForeignKey,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, BigId


class SloSample(Base):
    """Good and total event counts of one SLO over one step ending at `ts`."""

    __tablename__ = "slo_samples"
    __table_args__ = (UniqueConstraint("service", "slo", "ts"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    service: Mapped[str] = mapped_column(String(200))
    slo: Mapped[str] = mapped_column(String(200))
    ts: Mapped[datetime]
    good: Mapped[float] = mapped_column(Float)
    total: Mapped[float] = mapped_column(Float)


class Incident(Base):
    """An incident with its window; postmortems hang off it."""

    __tablename__ = "incidents"
    __table_args__ = (UniqueConstraint("incident_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_key: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(500))
    severity: Mapped[str] = mapped_column(String(20))
    service: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    summary: Mapped[str] = mapped_column(Text, default="")
    alert_group: Mapped[str | None] = mapped_column(String(500), default=None)
    """Alertmanager's `groupKey` for incidents opened by alerts (None: entered otherwise)."""


class IncidentAlert(Base):
    """One Alertmanager alert (`fingerprint` + `startsAt` = one firing episode) of an incident.

    A re-delivery matches the same row and changes nothing; the resolved notification sets
    `ends_at` and `status`.
    """

    __tablename__ = "incident_alerts"
    __table_args__ = (UniqueConstraint("fingerprint", "starts_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(20))
    alertname: Mapped[str] = mapped_column(String(200))
    service: Mapped[str | None] = mapped_column(String(200))
    severity: Mapped[str | None] = mapped_column(String(50))
    incident_key: Mapped[str] = mapped_column(
        ForeignKey("incidents.incident_key", ondelete="CASCADE"), index=True
    )
    group_key: Mapped[str] = mapped_column(String(500))
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    annotations: Mapped[dict[str, Any]] = mapped_column(default=dict)
    generator_url: Mapped[str | None] = mapped_column(String(1000))
    received_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Postmortem(Base):
    """A postmortem generated for an incident, with its issue link and action items."""

    __tablename__ = "postmortems"
    __table_args__ = (UniqueConstraint("incident_key", "generated_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_key: Mapped[str] = mapped_column(
        ForeignKey("incidents.incident_key", ondelete="CASCADE")
    )
    generated_at: Mapped[datetime]
    generated_by: Mapped[str] = mapped_column(String(200))
    issue_url: Mapped[str | None] = mapped_column(String(500))
    action_items: Mapped[list[Any]] = mapped_column(default=list)
    body_markdown: Mapped[str] = mapped_column(Text, default="")
