"""Read side for CI velocity: PR→preview lead time per SHA, cache hit ratio."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Subquery, and_, func, select
from sqlalchemy.orm import Session

from store.metrics import MetricValue, Window, metric
from store.models import (
    CiJobMetric,
    CiRun,
    Deployment,
    DeploymentStatus,
    PullRequest,
    PullRequestCommit,
)
from store.queries.frames import frame, percentile

DEFAULT_PREVIEW_PATTERN = r"^(preview|pr-\d+)"
LEAD_TIME_COLUMNS = [
    "repo",
    "pr",
    "sha",
    "started_at",
    "preview_ready_at",
    "seconds",
    "pr_url",
    "title",
]


def preview_environments(session: Session, pattern: str, repo: str | None = None) -> list[str]:
    """Return the deployment environment names that match the preview ``pattern``."""
    stmt = select(Deployment.environment).distinct()
    if repo:
        stmt = stmt.where(Deployment.repo == repo)
    regex = re.compile(pattern)
    return sorted(env for env in session.scalars(stmt) if regex.search(env))


def _first_pr_run() -> Subquery:
    return (
        select(
            CiRun.repo,
            CiRun.head_sha.label("sha"),
            func.min(CiRun.created_at).label("started_at"),
            func.max(CiRun.pr_number).label("run_pr"),
        )
        .where(CiRun.event.in_(("pull_request", "pull_request_target")))
        .group_by(CiRun.repo, CiRun.head_sha)
        .subquery("first_run")
    )


def lead_time_frame(
    session: Session,
    *,
    window: Window,
    repo: str | None = None,
    preview_pattern: str = DEFAULT_PREVIEW_PATTERN,
) -> pd.DataFrame:
    """Per (PR, SHA) lead time for SHAs whose preview became ready within ``window``.

    Columns: repo, pr (int|None), sha, started_at (UTC), preview_ready_at (UTC), seconds
    (float), pr_url, title. Start = first PR-triggered CI run for the SHA; end = first
    `success` status of a deployment of that SHA to a preview environment.
    """
    envs = preview_environments(session, preview_pattern, repo)
    if not envs:
        return pd.DataFrame(columns=LEAD_TIME_COLUMNS)
    ready = (
        select(
            Deployment.repo,
            Deployment.sha,
            func.min(DeploymentStatus.created_at).label("ready_at"),
        )
        .join(
            DeploymentStatus,
            and_(
                DeploymentStatus.repo == Deployment.repo,
                DeploymentStatus.deployment_id == Deployment.deployment_id,
            ),
        )
        .where(DeploymentStatus.state == "success", Deployment.environment.in_(envs))
        .group_by(Deployment.repo, Deployment.sha)
        .subquery("ready")
    )
    first = _first_pr_run()
    commit_pr = (
        select(
            PullRequestCommit.repo,
            PullRequestCommit.sha,
            func.max(PullRequestCommit.number).label("number"),
        )
        .group_by(PullRequestCommit.repo, PullRequestCommit.sha)
        .subquery("commit_pr")
    )
    pr_number = func.coalesce(commit_pr.c.number, first.c.run_pr)
    stmt = (
        select(
            first.c.repo,
            pr_number,
            first.c.sha,
            first.c.started_at,
            ready.c.ready_at,
            PullRequest.html_url,
            PullRequest.title,
        )
        .join(ready, and_(ready.c.repo == first.c.repo, ready.c.sha == first.c.sha))
        .outerjoin(
            commit_pr, and_(commit_pr.c.repo == first.c.repo, commit_pr.c.sha == first.c.sha)
        )
        .outerjoin(
            PullRequest, and_(PullRequest.repo == first.c.repo, PullRequest.number == pr_number)
        )
        .where(ready.c.ready_at >= window.start, ready.c.ready_at < window.end)
        .where(ready.c.ready_at >= first.c.started_at)
    )
    if repo:
        stmt = stmt.where(first.c.repo == repo)
    rows = session.execute(stmt).all()
    out = pd.DataFrame(
        [(r[0], r[1], r[2], r[3], r[4], (r[4] - r[3]).total_seconds(), r[5], r[6]) for r in rows],
        columns=LEAD_TIME_COLUMNS,
    )
    return out.sort_values("preview_ready_at", ignore_index=True) if len(out) else out


def waiting_shas_frame(
    session: Session,
    *,
    as_of: datetime,
    since: datetime,
    repo: str | None = None,
    preview_pattern: str = DEFAULT_PREVIEW_PATTERN,
) -> pd.DataFrame:
    """SHAs whose first PR run started in [since, as_of) with no preview ready by ``as_of``.

    Columns: repo, sha, started_at, waiting_s.
    """
    envs = preview_environments(session, preview_pattern, repo)
    first = _first_pr_run()
    ready_shas = (
        select(Deployment.repo, Deployment.sha)
        .join(
            DeploymentStatus,
            and_(
                DeploymentStatus.repo == Deployment.repo,
                DeploymentStatus.deployment_id == Deployment.deployment_id,
            ),
        )
        .where(
            DeploymentStatus.state == "success",
            Deployment.environment.in_(envs or [""]),
            DeploymentStatus.created_at < as_of,
        )
    )
    stmt = select(first.c.repo, first.c.sha, first.c.started_at).where(
        first.c.started_at >= since, first.c.started_at < as_of
    )
    df = frame(session, stmt, ["repo", "sha", "started_at"])
    done = {(r, s) for r, s in session.execute(ready_shas).all()}
    if repo:
        df = df[df["repo"] == repo]
    df = df[[(r, s) not in done for r, s in zip(df["repo"], df["sha"], strict=True)]]
    df = df.assign(waiting_s=[(as_of - t).total_seconds() for t in df["started_at"]])
    return df.reset_index(drop=True)


@metric(
    "ci.pr_preview_lead_time",
    unit="s",
    page="/ci",
    aggregations=("p50", "p95"),
    definition="""Per (PR, head SHA): from the first CI run triggered for that SHA by the PR to
    the first `success` deployment status of that SHA in a preview environment. Percentiles
    (linear interpolation) over SHAs whose preview became ready in the window; SHAs still
    waiting are counted apart, never dropped.""",
)
def _lead_time(session: Session, window: Window, agg: str, params: dict[str, Any]) -> MetricValue:
    df = lead_time_frame(
        session,
        window=window,
        repo=params.get("repo"),
        preview_pattern=params.get("preview_pattern", DEFAULT_PREVIEW_PATTERN),
    )
    q = {"p50": 50.0, "p95": 95.0}[agg]
    return MetricValue(
        percentile(df["seconds"], q), len(df), f"{len(df)} SHAs with a ready preview"
    )


@metric(
    "ci.pr_preview_lead_time_change",
    unit="ratio",
    page="/ci",
    aggregations=("p50", "p95"),
    definition="""Relative change of the PR→preview lead-time percentile in the window against
    the baseline window of the same length just before it (negative = faster).""",
)
def _lead_time_change(
    session: Session, window: Window, agg: str, params: dict[str, Any]
) -> MetricValue:
    baseline = Window(window.start - (window.end - window.start), window.start)
    now = _lead_time(session, window, agg, params)
    before = _lead_time(session, baseline, agg, params)
    if now.value is None or before.value is None or before.value == 0:
        return MetricValue(None, now.samples, "needs lead times in both the window and baseline")
    change = (now.value - before.value) / before.value
    return MetricValue(
        change,
        now.samples + before.samples,
        f"{agg} {before.value / 60:.1f} min before → {now.value / 60:.1f} min after",
    )


@metric(
    "ci.cache_hit_ratio",
    unit="ratio",
    page="/ci",
    definition="""Exact-key cache hits / cache lookups, from job metrics posted by CI
    (the GitHub API exposes no hit ratio).""",
)
def _cache_hit_ratio(
    session: Session, window: Window, agg: str, params: dict[str, Any]
) -> MetricValue:
    stmt = select(
        func.coalesce(func.sum(CiJobMetric.cache_hits), 0),
        func.coalesce(func.sum(CiJobMetric.cache_lookups), 0),
    ).where(CiJobMetric.finished_at >= window.start, CiJobMetric.finished_at < window.end)
    if params.get("repo"):
        stmt = stmt.where(CiJobMetric.repo == params["repo"])
    hits, lookups = session.execute(stmt).one()
    if not lookups:
        return MetricValue(None, 0, "no cache lookups reported")
    return MetricValue(hits / lookups, int(lookups), f"{hits} hits / {lookups} lookups")
