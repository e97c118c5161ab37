"""Typed models for every area of the store, one module per area, all on one metadata.

Every ingested table has a natural-key unique constraint so that writers can use
``INSERT … ON CONFLICT`` and a retried batch never duplicates a row. Durations are seconds;
timestamps are aware UTC (:class:`store.types.UTCDateTime`). Import models from here.
"""

# Every area module is imported so that Base.metadata is complete for Alembic and tests.
from store.models import actions as actions
from store.models import runbooks as runbooks
from store.models import scale as scale
from store.models.base import NAMING_CONVENTION, Base, BigId
from store.models.ci import (
    CiJobMetric,
    CiRun,
    CiTestResult,
    Deployment,
    DeploymentStatus,
    PullRequest,
    PullRequestCommit,
)
from store.models.egress import ExportEvent
from store.models.failover import FAILOVER_PHASES, FailoverEvent, FailoverRun, ReplicationLagSample
from store.models.ops import ActionAudit, IngestReject, SyncRun
from store.models.policy import BundlePin, BundleRevision, OpaDecision, OpaStatusReport
from store.models.reliability import Incident, Postmortem, SloSample
from store.models.traffic import DnsWeightObservation, HealthCheckObservation, TrafficSample

__all__ = [
    "FAILOVER_PHASES",
    "NAMING_CONVENTION",
    "ActionAudit",
    "Base",
    "BigId",
    "BundlePin",
    "BundleRevision",
    "CiJobMetric",
    "CiRun",
    "CiTestResult",
    "Deployment",
    "DeploymentStatus",
    "DnsWeightObservation",
    "ExportEvent",
    "FailoverEvent",
    "FailoverRun",
    "HealthCheckObservation",
    "Incident",
    "IngestReject",
    "OpaDecision",
    "OpaStatusReport",
    "Postmortem",
    "PullRequest",
    "PullRequestCommit",
    "ReplicationLagSample",
    "SloSample",
    "SyncRun",
    "TrafficSample",
]
