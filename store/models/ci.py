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
