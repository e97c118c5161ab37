"""Typed models for every area of the store: CI, policy, traffic, failover, egress, ops.

Every ingested table has a natural-key unique constraint so that writers can use
``INSERT … ON CONFLICT`` and a retried batch never duplicates a row. Durations are seconds;
timestamps are aware UTC (:class:`store.types.UTCDateTime`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from store.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads it as a class attribute)
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


# --------------------------------------------------------------------------------------------
# CI velocity (GitHub + job metrics posted by CI)
# --------------------------------------------------------------------------------------------


class PullRequest(Base):
    """A pull request as GitHub last described it (head SHA moves with each push)."""

    __tablename__ = "pull_requests"
    __table_args__ = (UniqueConstraint("repo", "number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    repo: Mapped[str] = mapped_column(String(200))
    number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(500), default="")
    author: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(20))
    head_sha: Mapped[str] = mapped_column(String(64))
    head_ref: Mapped[str | None] = mapped_column(String(250))
    html_url: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime | None]
    merged_at: Mapped[datetime | None]


class PullRequestCommit(Base):
    """Each head SHA a PR has had, with when it became the head (from `synchronize` events)."""

    __tablename__ = "pull_request_commits"
    __table_args__ = (UniqueConstraint("repo", "number", "sha"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    repo: Mapped[str] = mapped_column(String(200))
    number: Mapped[int] = mapped_column(Integer)
    sha: Mapped[str] = mapped_column(String(64), index=True)
    pushed_at: Mapped[datetime]


class CiRun(Base):
    """One attempt of a GitHub Actions workflow run; re-runs are new rows by `run_attempt`."""

    __tablename__ = "ci_runs"
    __table_args__ = (
        UniqueConstraint("repo", "run_id", "run_attempt"),
        Index("ix_ci_runs_repo_head_sha", "repo", "head_sha"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    repo: Mapped[str] = mapped_column(String(200))
    run_id: Mapped[int] = mapped_column(BigInteger)
    run_attempt: Mapped[int] = mapped_column(Integer, default=1)
    workflow_name: Mapped[str] = mapped_column(String(200), default="")
    event: Mapped[str] = mapped_column(String(50))
    head_sha: Mapped[str] = mapped_column(String(64))
    head_branch: Mapped[str | None] = mapped_column(String(250))
    pr_number: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(30))
    conclusion: Mapped[str | None] = mapped_column(String(30))
    html_url: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]
    run_started_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]


class CiJobMetric(Base):
    """What one CI job reported about itself: duration, shard, cache lookups and hits."""

    __tablename__ = "ci_job_metrics"
    __table_args__ = (UniqueConstraint("repo", "run_id", "run_attempt", "job_name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    repo: Mapped[str] = mapped_column(String(200))
    run_id: Mapped[int] = mapped_column(BigInteger)
    run_attempt: Mapped[int] = mapped_column(Integer, default=1)
    job_name: Mapped[str] = mapped_column(String(200))
    head_sha: Mapped[str | None] = mapped_column(String(64))
    shard_index: Mapped[int | None] = mapped_column(Integer)
    shard_total: Mapped[int | None] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Float)
    cache_lookups: Mapped[int] = mapped_column(Integer, default=0)
    cache_hits: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[datetime]


class CiTestResult(Base):
    """One test's outcome in one job attempt (for flaky detection: fail then pass, same SHA)."""

    __tablename__ = "ci_test_results"
    __table_args__ = (UniqueConstraint("repo", "run_id", "run_attempt", "job_name", "test_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    repo: Mapped[str] = mapped_column(String(200))
    run_id: Mapped[int] = mapped_column(BigInteger)
    run_attempt: Mapped[int] = mapped_column(Integer, default=1)
    job_name: Mapped[str] = mapped_column(String(200))
    head_sha: Mapped[str] = mapped_column(String(64), index=True)
    test_id: Mapped[str] = mapped_column(String(500))
    outcome: Mapped[str] = mapped_column(String(20))
    duration_s: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[datetime]


class Deployment(Base):
    """A GitHub deployment of one SHA to one environment."""

    __tablename__ = "deployments"
    __table_args__ = (
        UniqueConstraint("repo", "deployment_id"),
        Index("ix_deployments_repo_sha", "repo", "sha"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    repo: Mapped[str] = mapped_column(String(200))
    deployment_id: Mapped[int] = mapped_column(BigInteger)
    sha: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str | None] = mapped_column(String(250))
    environment: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]


class DeploymentStatus(Base):
    """One status of a deployment (`success` in a preview environment ends PR→preview)."""

    __tablename__ = "deployment_statuses"
    __table_args__ = (
        UniqueConstraint("repo", "status_id"),
        Index("ix_deployment_statuses_repo_deployment_id", "repo", "deployment_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    repo: Mapped[str] = mapped_column(String(200))
    status_id: Mapped[int] = mapped_column(BigInteger)
    deployment_id: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(20))
    environment: Mapped[str] = mapped_column(String(200))
    environment_url: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]


# --------------------------------------------------------------------------------------------
# Policy as code (OPA decision logs, status, bundles, pins)
# --------------------------------------------------------------------------------------------


class OpaDecision(Base):
    """One OPA decision-log event; `decision_id` is unique because OPA re-sends failed chunks."""

    __tablename__ = "opa_decisions"
    __table_args__ = (
        UniqueConstraint("decision_id"),
        Index("ix_opa_decisions_timestamp", "timestamp"),
        Index("ix_opa_decisions_path_timestamp", "path", "timestamp"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    decision_id: Mapped[str] = mapped_column(String(100))
    timestamp: Mapped[datetime]
    received_at: Mapped[datetime]
    instance_id: Mapped[str] = mapped_column(String(200), index=True)
    environment: Mapped[str | None] = mapped_column(String(50))
    opa_version: Mapped[str | None] = mapped_column(String(50))
    path: Mapped[str] = mapped_column(String(500))
    allowed: Mapped[bool | None] = mapped_column(Boolean)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    bundles: Mapped[dict[str, Any]] = mapped_column(default=dict)
    erased: Mapped[list[Any]] = mapped_column(default=list)
    masked: Mapped[list[Any]] = mapped_column(default=list)
    input: Mapped[Any | None] = mapped_column(JSON)
    result: Mapped[Any | None] = mapped_column(JSON)
    requested_by: Mapped[str | None] = mapped_column(String(200))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)


class OpaStatusReport(Base):
    """Per instance and bundle: the revision OPA reported active at a moment (history kept)."""

    __tablename__ = "opa_status_reports"
    __table_args__ = (
        UniqueConstraint("instance_id", "bundle", "reported_at"),
        Index("ix_opa_status_reports_instance_bundle", "instance_id", "bundle"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str | None] = mapped_column(String(50))
    bundle: Mapped[str] = mapped_column(String(200))
    active_revision: Mapped[str | None] = mapped_column(String(200))
    last_successful_activation: Mapped[datetime | None]
    code: Mapped[str | None] = mapped_column(String(100))
    message: Mapped[str | None] = mapped_column(Text)
    reported_at: Mapped[datetime]


class BundleRevision(Base):
    """A bundle revision known to the registry, with the result of verifying its signature."""

    __tablename__ = "bundle_revisions"
    __table_args__ = (UniqueConstraint("bundle", "revision"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bundle: Mapped[str] = mapped_column(String(200))
    revision: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any]] = mapped_column(default=dict)
    signature_status: Mapped[str] = mapped_column(String(20))  # verified | unsigned | invalid
    signature_detail: Mapped[str] = mapped_column(Text, default="")
    key_id: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(500))
    added_at: Mapped[datetime]


class BundlePin(Base):
    """The revision pinned for (bundle, environment) from `pinned_at` on; latest row wins."""

    __tablename__ = "bundle_pins"
    __table_args__ = (UniqueConstraint("bundle", "environment", "pinned_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bundle: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(50))
    revision: Mapped[str] = mapped_column(String(200))
    pinned_at: Mapped[datetime]
    pinned_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text, default="")


# --------------------------------------------------------------------------------------------
# Traffic (Prometheus ingress metrics, Route53 weights and health)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Failover (runs, phases, replication lag)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Egress (export access events)
# --------------------------------------------------------------------------------------------


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
    token_state: Mapped[str] = mapped_column(String(20))  # valid | missing | invalid | expired
    token_scope: Mapped[str | None] = mapped_column(String(200))
    watermarked: Mapped[bool] = mapped_column(Boolean)


# --------------------------------------------------------------------------------------------
# Reliability (SLO samples, incidents, postmortems)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Ops: collector runs, dead letters, audit
# --------------------------------------------------------------------------------------------


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


FAILOVER_PHASES = ("started", "promoted", "writable", "traffic_shifted", "complete")
"""Phases of a failover run, in order. RTO runs from `started` to `writable`."""
