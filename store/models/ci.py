"""CI velocity: pull requests, workflow runs, job metrics, test results, deployments."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Float,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, BigId


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
        Index("ix_ci_runs_repo_created_at", "repo", "created_at"),
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
    __table_args__ = (
        UniqueConstraint("repo", "run_id", "run_attempt", "job_name"),
        Index("ix_ci_job_metrics_repo_finished_at", "repo", "finished_at"),
    )

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
    owner: Mapped[str | None] = mapped_column(String(200))


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
        Index("ix_deployment_statuses_repo_created_at", "repo", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    repo: Mapped[str] = mapped_column(String(200))
    status_id: Mapped[int] = mapped_column(BigInteger)
    deployment_id: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(20))
    environment: Mapped[str] = mapped_column(String(200))
    environment_url: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]


class CiJob(Base):
    """One job of one workflow run attempt, as the GitHub jobs API reports it (poller only)."""

    __tablename__ = "ci_jobs"
    __table_args__ = (
        UniqueConstraint("repo", "job_id"),
        Index("ix_ci_jobs_repo_run_id", "repo", "run_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    repo: Mapped[str] = mapped_column(String(200))
    job_id: Mapped[int] = mapped_column(BigInteger)
    run_id: Mapped[int] = mapped_column(BigInteger)
    run_attempt: Mapped[int] = mapped_column(Integer, default=1)
    name: Mapped[str] = mapped_column(String(200))
    head_sha: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(30))
    conclusion: Mapped[str | None] = mapped_column(String(30))
    created_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]


class GitHubDelivery(Base):
    """One webhook delivery accepted by `POST /ingest/github` (GitHub's `X-GitHub-Delivery`).

    A redelivery carries the same id, so storing it once makes the receiver idempotent even for
    events whose rows have no natural key of their own.
    """

    __tablename__ = "github_deliveries"
    __table_args__ = (UniqueConstraint("delivery_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(100))
    event: Mapped[str] = mapped_column(String(50))
    outcome: Mapped[str] = mapped_column(String(20))
    received_at: Mapped[datetime] = mapped_column(index=True)


class GitHubCursor(Base):
    """Where the poller stands for one (repo, endpoint): high-water mark, resume URL, ETag.

    `next_url` is set while a backfill pass is under way (the page to fetch next after a
    restart); `high_water` only moves when a pass has reached data it had already seen.
    """

    __tablename__ = "github_cursors"
    __table_args__ = (UniqueConstraint("repo", "endpoint"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    repo: Mapped[str] = mapped_column(String(200))
    endpoint: Mapped[str] = mapped_column(String(50))
    high_water: Mapped[datetime | None]
    pass_high_water: Mapped[datetime | None]
    next_url: Mapped[str | None] = mapped_column(String(2000))
    etag: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime]


class QuarantinedTest(Base):
    """A flaky test (failed, then passed on retry for the same SHA) held in quarantine.

    The quarantine expires `quarantine_days` after the test's last flake; a new flake extends it.
    """

    __tablename__ = "ci_quarantined_tests"
    __table_args__ = (UniqueConstraint("repo", "test_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    repo: Mapped[str] = mapped_column(String(200))
    test_id: Mapped[str] = mapped_column(String(500))
    owner: Mapped[str | None] = mapped_column(String(200))
    first_flaked_at: Mapped[datetime]
    last_flaked_at: Mapped[datetime]
    last_sha: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
