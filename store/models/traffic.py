"""Traffic: ingress request rates per region, Route53 weights and health checks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, BigId


class TrafficSample(Base):
    """Request rates for one region and ingress at one step (req/s averaged over the step)."""

    __tablename__ = "traffic_samples"
    __table_args__ = (
        UniqueConstraint("ts", "region", "ingress"),
        Index("ix_traffic_samples_region_ts", "region", "ts"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ts: Mapped[datetime]
    region: Mapped[str] = mapped_column(String(50))
    ingress: Mapped[str] = mapped_column(String(200))
    requests_per_s: Mapped[float] = mapped_column(Float, default=0.0)
    rate_429_per_s: Mapped[float] = mapped_column(Float, default=0.0)
    rate_5xx_per_s: Mapped[float] = mapped_column(Float, default=0.0)
    rate_503_per_s: Mapped[float] = mapped_column(Float, default=0.0)
    cache_hit_ratio: Mapped[float | None] = mapped_column(Float)


class DnsWeightObservation(Base):
    """A Route53 weighted record as seen by one poll; `gone` marks a record that disappeared."""

    __tablename__ = "dns_weight_observations"
    __table_args__ = (
        UniqueConstraint("record_name", "record_type", "set_identifier", "observed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    zone_id: Mapped[str] = mapped_column(String(100))
    record_name: Mapped[str] = mapped_column(String(255))
    record_type: Mapped[str] = mapped_column(String(10))
    set_identifier: Mapped[str] = mapped_column(String(128))
    weight: Mapped[int] = mapped_column(Integer)
    ttl: Mapped[int | None] = mapped_column(Integer)
    health_check_id: Mapped[str | None] = mapped_column(String(100))
    gone: Mapped[bool] = mapped_column(Boolean, default=False)
    observed_at: Mapped[datetime]


class HealthCheckObservation(Base):
    """One Route53 health-checker observation of one health check."""

    __tablename__ = "health_check_observations"
    __table_args__ = (UniqueConstraint("health_check_id", "checker_region", "checked_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    health_check_id: Mapped[str] = mapped_column(String(100))
    checker_region: Mapped[str] = mapped_column(String(50))
    healthy: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(Text)
    checked_at: Mapped[datetime]


class TrafficRollup(Base):
    """Hourly sums of traffic samples per region and ingress, kept in step by the loader.

    Rates are summed over the hour's samples (divide by `samples` for the mean rate);
    `cache_hit_sum`/`cache_samples` average the ratio over the samples that carried one.
    """

    __tablename__ = "traffic_rollups"
    __table_args__ = (
        UniqueConstraint("bucket", "region", "ingress"),
        Index("ix_traffic_rollups_region_bucket", "region", "bucket"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bucket: Mapped[datetime]
    region: Mapped[str] = mapped_column(String(50))
    ingress: Mapped[str] = mapped_column(String(200))
    samples: Mapped[int] = mapped_column(Integer, default=0)
    requests_sum: Mapped[float] = mapped_column(Float, default=0.0)
    r429_sum: Mapped[float] = mapped_column(Float, default=0.0)
    r5xx_sum: Mapped[float] = mapped_column(Float, default=0.0)
    r503_sum: Mapped[float] = mapped_column(Float, default=0.0)
    cache_hit_sum: Mapped[float] = mapped_column(Float, default=0.0)
    cache_samples: Mapped[int] = mapped_column(Integer, default=0)
