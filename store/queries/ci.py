"""Read side for CI velocity: PR→preview lead time per SHA, cache hit ratio, shards, flaky tests.

Every `*_frame` returns a DataFrame with the documented columns (empty frame when there is no
data); durations are seconds, timestamps aware UTC.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.orm import Session

from store.measures import MetricValue, Window
from store.models import (
    CiJobMetric,
    CiRun,
    CiTestResult,
    Deployment,
    DeploymentStatus,
    PullRequest,
    PullRequestCommit,
)
from store.models.ci import GitHubDelivery, QuarantinedTest
from store.queries.daily import grouped, span, split_by_time, window_index, within
from store.queries.frames import as_utc, frame, percentile

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


PR_EVENTS = ("pull_request", "pull_request_target")
_CHUNK = 500

ShaKey = tuple[str, str]


def _chunks(keys: list[Any]) -> list[list[Any]]:
    return [keys[i : i + _CHUNK] for i in range(0, len(keys), _CHUNK)]


def per_repo(keys: Any) -> list[tuple[str, list[Any]]]:
    """(repo, up to 500 second parts) batches of (repo, x) keys.

    `repo = ? AND x IN (…)` searches the (repo, x) indexes on SQLite and PostgreSQL, where a
    row-value `(repo, x) IN (…)` makes SQLite scan the whole index.
    """
    grouped: dict[str, list[Any]] = {}
    for repo, part in sorted(keys):
        grouped.setdefault(repo, []).append(part)
    return [(repo, chunk) for repo, parts in grouped.items() for chunk in _chunks(parts)]


FirstRun = tuple[datetime, int | None]


def _first_pr_runs(session: Session, shas: set[ShaKey]) -> dict[ShaKey, FirstRun]:
    """First PR-triggered run per (repo, SHA): its `created_at` and the PR it names, if any."""
    found: dict[ShaKey, FirstRun] = {}
    for repo_name, chunk in per_repo(shas):
        stmt = (
            select(
                CiRun.repo,
                CiRun.head_sha,
                func.min(CiRun.created_at),
                func.max(CiRun.pr_number),
            )
            .where(CiRun.repo == repo_name, CiRun.head_sha.in_(chunk))
            .where(CiRun.event.in_(PR_EVENTS))
            .group_by(CiRun.repo, CiRun.head_sha)
        )
        for repo, sha, started, pr in session.execute(stmt):
            found[(repo, sha)] = (_aware(started), pr)
    return found


def _ready_at(
    session: Session,
    *,
    before: datetime,
    pattern: str,
    repo: str | None = None,
    shas: set[ShaKey] | None = None,
    since: datetime | None = None,
) -> dict[ShaKey, datetime]:
    """First `success` status before ``before`` of each SHA in a preview environment.

    Grouped per environment in SQL, matched against the preview pattern here (a regex is not
    portable SQL), then the earliest across preview environments wins. With ``since``, only
    SHAs with a success in [since, before) are looked at: no other SHA can have its first
    success there, and the index on status time finds them without reading older history.
    """
    regex = re.compile(pattern)
    if shas is None and since is not None:
        candidates = (
            select(Deployment.repo, Deployment.sha)
            .join(
                DeploymentStatus,
                and_(
                    DeploymentStatus.repo == Deployment.repo,
                    DeploymentStatus.deployment_id == Deployment.deployment_id,
                ),
            )
            .where(DeploymentStatus.state == "success")
            .where(DeploymentStatus.created_at >= since, DeploymentStatus.created_at < before)
            .distinct()
        )
        if repo:
            candidates = candidates.where(DeploymentStatus.repo == repo)
        shas = {(r, sha) for r, sha in session.execute(candidates)}
        if not shas:
            return {}
    base = (
        select(
            Deployment.repo,
            Deployment.sha,
            Deployment.environment,
            func.min(DeploymentStatus.created_at),
        )
        .join(
            DeploymentStatus,
            and_(
                DeploymentStatus.repo == Deployment.repo,
                DeploymentStatus.deployment_id == Deployment.deployment_id,
            ),
        )
        .where(DeploymentStatus.state == "success", DeploymentStatus.created_at < before)
        .group_by(Deployment.repo, Deployment.sha, Deployment.environment)
    )
    if repo:
        base = base.where(Deployment.repo == repo)
    stmts = (
        [base]
        if shas is None
        else [
            base.where(Deployment.repo == repo_name, Deployment.sha.in_(chunk))
            for repo_name, chunk in per_repo(shas)
        ]
    )
    ready: dict[ShaKey, datetime] = {}
    for stmt in stmts:
        for r, sha, env, at in session.execute(stmt):
            if not regex.search(env):
                continue
            when = _aware(at)
            if (r, sha) not in ready or when < ready[(r, sha)]:
                ready[(r, sha)] = when
    return ready


def _aware(value: Any) -> datetime:
    # MIN() over a UTCDateTime column: PostgreSQL returns aware values, SQLite the naive text.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return as_utc(value)


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
    `success` status of a deployment of that SHA to a preview environment. The PR is the one
    that had the SHA as its head (so fork PRs, whose runs name no PR, are found), else the
    one the run names.
    """
    ready = {
        key: at
        for key, at in _ready_at(
            session, before=window.end, pattern=preview_pattern, repo=repo, since=window.start
        ).items()
        if at >= window.start
    }
    if not ready:
        return pd.DataFrame(columns=LEAD_TIME_COLUMNS)
    first = _first_pr_runs(session, set(ready))
    commit_pr: dict[ShaKey, int] = {}
    for repo_name, chunk in per_repo(first):
        stmt = (
            select(
                PullRequestCommit.repo, PullRequestCommit.sha, func.max(PullRequestCommit.number)
            )
            .where(PullRequestCommit.repo == repo_name, PullRequestCommit.sha.in_(chunk))
            .group_by(PullRequestCommit.repo, PullRequestCommit.sha)
        )
        commit_pr.update({(r, sha): n for r, sha, n in session.execute(stmt)})
    rows = []
    for key, (started, run_pr) in first.items():
        if ready[key] < started:
            continue
        rows.append((key, commit_pr.get(key, run_pr), started, ready[key]))
    prs: dict[tuple[str, int], tuple[str | None, str]] = {}
    wanted = sorted({(key[0], pr) for key, pr, _, _ in rows if pr is not None})
    for repo_name, numbers in per_repo(wanted):
        pr_stmt = select(
            PullRequest.repo, PullRequest.number, PullRequest.html_url, PullRequest.title
        ).where(PullRequest.repo == repo_name, PullRequest.number.in_(numbers))
        prs.update({(r, n): (url, title) for r, n, url, title in session.execute(pr_stmt)})
    out = pd.DataFrame(
        [
            (
                key[0],
                pr,
                key[1],
                started,
                ready_at,
                (ready_at - started).total_seconds(),
                *prs.get((key[0], pr if pr is not None else -1), (None, None)),
            )
            for key, pr, started, ready_at in rows
        ],
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
    candidates = select(CiRun.repo, CiRun.head_sha).where(
        CiRun.event.in_(PR_EVENTS), CiRun.created_at >= since, CiRun.created_at < as_of
    )
    if repo:
        candidates = candidates.where(CiRun.repo == repo)
    shas = {(r, sha) for r, sha in session.execute(candidates.distinct())}
    first = {
        key: started
        for key, (started, _) in _first_pr_runs(session, shas).items()
        if since <= started < as_of
    }
    done = _ready_at(session, before=as_of, pattern=preview_pattern, repo=repo, shas=set(first))
    rows = sorted((started, key) for key, started in first.items() if key not in done)
    return pd.DataFrame(
        [(key[0], key[1], started, (as_of - started).total_seconds()) for started, key in rows],
        columns=["repo", "sha", "started_at", "waiting_s"],
    )


def _lead_time(session: Session, window: Window, agg: str, params: dict[str, Any]) -> MetricValue:
    df = lead_time_frame(
        session,
        window=window,
        repo=params.get("repo"),
        preview_pattern=params.get("preview_pattern", DEFAULT_PREVIEW_PATTERN),
    )
    return _lead_time_value(df, agg)


def _lead_time_value(df: pd.DataFrame, agg: str) -> MetricValue:
    q = {"p50": 50.0, "p95": 95.0}[agg]
    return MetricValue(
        percentile(df["seconds"], q), len(df), f"{len(df)} SHAs with a ready preview"
    )


def _lead_time_daily(
    session: Session, windows: Sequence[Window], agg: str, params: dict[str, Any]
) -> list[MetricValue]:
    """``ci.pr_preview_lead_time`` per consecutive window from one lead-time frame.

    A SHA's lead time does not depend on the window asked for (its first preview success and
    first PR run are its own), so the frame over the whole span, split by `preview_ready_at`,
    holds exactly the rows of each window's own frame.
    """
    df = lead_time_frame(
        session,
        window=span(windows),
        repo=params.get("repo"),
        preview_pattern=params.get("preview_pattern", DEFAULT_PREVIEW_PATTERN),
    )
    return [_lead_time_value(part, agg) for part in split_by_time(df, "preview_ready_at", windows)]


def _lead_time_change(
    session: Session, window: Window, agg: str, params: dict[str, Any]
) -> MetricValue:
    baseline = Window(window.start - (window.end - window.start), window.start)
    now = _lead_time(session, window, agg, params)
    before = _lead_time(session, baseline, agg, params)
    return _change_value(now, before, agg)


def _change_value(now: MetricValue, before: MetricValue, agg: str) -> MetricValue:
    if now.value is None or before.value is None or before.value == 0:
        return MetricValue(None, now.samples, "needs lead times in both the window and baseline")
    change = (now.value - before.value) / before.value
    return MetricValue(
        change,
        now.samples + before.samples,
        f"{agg} {before.value / 60:.1f} min before → {now.value / 60:.1f} min after",
    )


def _lead_time_change_daily(
    session: Session, windows: Sequence[Window], agg: str, params: dict[str, Any]
) -> list[MetricValue]:
    """``ci.pr_preview_lead_time_change`` per consecutive window from one lead-time frame."""
    whole = span(windows)
    baselines = [Window(w.start - (w.end - w.start), w.start) for w in windows]
    df = lead_time_frame(
        session,
        window=Window(min(b.start for b in baselines), whole.end),
        repo=params.get("repo"),
        preview_pattern=params.get("preview_pattern", DEFAULT_PREVIEW_PATTERN),
    )
    out = []
    for window, baseline in zip(windows, baselines, strict=True):
        now, before = split_by_time(df, "preview_ready_at", [window, baseline])
        out.append(_change_value(_lead_time_value(now, agg), _lead_time_value(before, agg), agg))
    return out


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
    return _cache_hit_value(hits, lookups)


def _cache_hit_value(hits: Any, lookups: Any) -> MetricValue:
    if not lookups:
        return MetricValue(None, 0, "no cache lookups reported")
    return MetricValue(hits / lookups, int(lookups), f"{hits} hits / {lookups} lookups")


def _cache_hit_ratio_daily(
    session: Session, windows: Sequence[Window], agg: str, params: dict[str, Any]
) -> list[MetricValue]:
    """``ci.cache_hit_ratio`` for consecutive windows in one grouped statement."""
    index = window_index(CiJobMetric.finished_at, windows)
    stmt = select(
        index,
        func.coalesce(func.sum(CiJobMetric.cache_hits), 0),
        func.coalesce(func.sum(CiJobMetric.cache_lookups), 0),
    ).where(within(CiJobMetric.finished_at, windows))
    if params.get("repo"):
        stmt = stmt.where(CiJobMetric.repo == params["repo"])
    found = grouped(session, stmt.group_by(index), windows, ["hits", "lookups"])
    return [
        _cache_hit_value(0, 0) if r is None else _cache_hit_value(int(r["hits"]), int(r["lookups"]))
        for r in found
    ]


# --------------------------------------------------------------------------------------------
# The CI page: summaries, daily trends, shard balance, flaky quarantine
# --------------------------------------------------------------------------------------------

LEAD_TIME_DAILY_COLUMNS = ["day", "p50_s", "p95_s", "count"]
CACHE_DAILY_COLUMNS = ["day", "hits", "lookups", "ratio"]
SHARD_COLUMNS = ["repo", "workflow", "shard_total", "shard_index", "jobs", "mean_s", "max_s"]
QUARANTINE_COLUMNS = [
    "repo",
    "test_id",
    "owner",
    "first_flaked_at",
    "last_flaked_at",
    "expires_at",
    "last_sha",
    "active",
    "flaky_shas",
]
DELIVERY_COLUMNS = ["event", "outcome", "deliveries"]


@dataclass(frozen=True)
class LeadTimeSummary:
    """p50/p95 (seconds) and the sample count of a lead-time frame; None values: no samples."""

    p50_s: float | None
    p95_s: float | None
    count: int


def summarize_lead_times(df: pd.DataFrame) -> LeadTimeSummary:
    """p50, p95 (linear interpolation) and count over the `seconds` column of a lead-time frame."""
    seconds: Any = df.get("seconds", [])
    return LeadTimeSummary(percentile(seconds, 50.0), percentile(seconds, 95.0), len(df))


def lead_time_daily_frame(lead_times: pd.DataFrame) -> pd.DataFrame:
    """Per UTC day of `preview_ready_at`: p50_s, p95_s and count. Columns: day (date), …"""
    if lead_times.empty:
        return pd.DataFrame(columns=LEAD_TIME_DAILY_COLUMNS)
    days = [as_utc(t).date() for t in lead_times["preview_ready_at"]]
    rows = []
    for day, group in lead_times.groupby(days, sort=True):
        rows.append(
            (
                day,
                percentile(group["seconds"], 50.0),
                percentile(group["seconds"], 95.0),
                len(group),
            )
        )
    return pd.DataFrame(rows, columns=LEAD_TIME_DAILY_COLUMNS)


def _utc_day(session: Session, column: Any) -> ColumnElement[Any]:
    # SQLite keeps naive UTC text; PostgreSQL's date() would use the session time zone.
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)


def _day_value(value: Any) -> Any:
    if isinstance(value, str):
        return datetime.fromisoformat(value).date()
    return value


def cache_hit_daily_frame(
    session: Session, *, window: Window, repo: str | None = None
) -> pd.DataFrame:
    """Exact-key cache hits and lookups per UTC day of job finish. Columns: CACHE_DAILY_COLUMNS."""
    day = _utc_day(session, CiJobMetric.finished_at).label("day")
    stmt = (
        select(day, func.sum(CiJobMetric.cache_hits), func.sum(CiJobMetric.cache_lookups))
        .where(CiJobMetric.finished_at >= window.start, CiJobMetric.finished_at < window.end)
        .where(CiJobMetric.cache_lookups > 0)
        .group_by(day)
        .order_by(day)
    )
    if repo:
        stmt = stmt.where(CiJobMetric.repo == repo)
    rows = [
        (_day_value(d), int(h), int(n), (int(h) / int(n)) if n else None)
        for d, h, n in session.execute(stmt)
    ]
    return pd.DataFrame(rows, columns=CACHE_DAILY_COLUMNS)


def shard_balance_frame(
    session: Session, *, window: Window, repo: str | None = None
) -> pd.DataFrame:
    """Job duration per shard of each sharded workflow. Columns: SHARD_COLUMNS (seconds).

    The workflow is the run's workflow name when the run is known, else the job name without
    its shard suffix, so reports that arrive before the run's webhook still group sensibly.
    """
    workflow = func.coalesce(CiRun.workflow_name, CiJobMetric.job_name).label("workflow")
    stmt = (
        select(
            CiJobMetric.repo,
            workflow,
            CiJobMetric.shard_total,
            CiJobMetric.shard_index,
            func.count(),
            func.avg(CiJobMetric.duration_s),
            func.max(CiJobMetric.duration_s),
        )
        .outerjoin(
            CiRun,
            and_(
                CiRun.repo == CiJobMetric.repo,
                CiRun.run_id == CiJobMetric.run_id,
                CiRun.run_attempt == CiJobMetric.run_attempt,
            ),
        )
        .where(CiJobMetric.shard_total.is_not(None))
        .where(CiJobMetric.finished_at >= window.start, CiJobMetric.finished_at < window.end)
        .group_by(CiJobMetric.repo, workflow, CiJobMetric.shard_total, CiJobMetric.shard_index)
        .order_by(CiJobMetric.repo, workflow, CiJobMetric.shard_total, CiJobMetric.shard_index)
    )
    if repo:
        stmt = stmt.where(CiJobMetric.repo == repo)
    df = frame(session, stmt, SHARD_COLUMNS)
    if not df.empty:
        df["workflow"] = [re.sub(r"\s*\(\d+/\d+\)$", "", str(w)) for w in df["workflow"]]
        df = (
            df.groupby(["repo", "workflow", "shard_total", "shard_index"], as_index=False)
            .agg(jobs=("jobs", "sum"), mean_s=("mean_s", "mean"), max_s=("max_s", "max"))
            .reindex(columns=SHARD_COLUMNS)
        )
    return df


def quarantine_frame(
    session: Session, *, as_of: datetime, window: Window | None = None, repo: str | None = None
) -> pd.DataFrame:
    """The flaky-test quarantine, active entries first. Columns: QUARANTINE_COLUMNS.

    `active` = the entry has not expired at ``as_of``; `flaky_shas` = SHAs on which the test
    both failed and passed (or passed after an in-job rerun) with results in ``window``.
    """
    failed = func.max(case((CiTestResult.outcome.in_(("failed", "error")), 1), else_=0))
    passed = func.max(case((CiTestResult.outcome == "passed", 1), else_=0))
    flaky = func.max(case((CiTestResult.outcome == "flaky", 1), else_=0))
    per_sha = select(CiTestResult.repo, CiTestResult.test_id, CiTestResult.head_sha).group_by(
        CiTestResult.repo, CiTestResult.test_id, CiTestResult.head_sha
    )
    per_sha = per_sha.having((failed + passed == 2) | (flaky == 1))
    if window is not None:
        per_sha = per_sha.where(
            CiTestResult.finished_at >= window.start, CiTestResult.finished_at < window.end
        )
    if repo:
        per_sha = per_sha.where(CiTestResult.repo == repo)
    sub = per_sha.subquery("flaky_shas")
    counts = (
        select(sub.c.repo, sub.c.test_id, func.count().label("n"))
        .group_by(sub.c.repo, sub.c.test_id)
        .subquery("flaky_counts")
    )
    stmt = (
        select(
            QuarantinedTest.repo,
            QuarantinedTest.test_id,
            QuarantinedTest.owner,
            QuarantinedTest.first_flaked_at,
            QuarantinedTest.last_flaked_at,
            QuarantinedTest.expires_at,
            QuarantinedTest.last_sha,
            QuarantinedTest.expires_at > as_of,
            func.coalesce(counts.c.n, 0),
        )
        .outerjoin(
            counts,
            and_(
                counts.c.repo == QuarantinedTest.repo,
                counts.c.test_id == QuarantinedTest.test_id,
            ),
        )
        .order_by(QuarantinedTest.expires_at.desc(), QuarantinedTest.test_id)
    )
    if repo:
        stmt = stmt.where(QuarantinedTest.repo == repo)
    df = frame(session, stmt, QUARANTINE_COLUMNS)
    if not df.empty:
        df["active"] = df["active"].astype(bool)
        df = df.sort_values(["active", "expires_at"], ascending=[False, False], ignore_index=True)
    return df


def deliveries_frame(session: Session, *, since: datetime) -> pd.DataFrame:
    """Webhook deliveries since ``since`` per event and outcome. Columns: DELIVERY_COLUMNS."""
    stmt = (
        select(GitHubDelivery.event, GitHubDelivery.outcome, func.count())
        .where(GitHubDelivery.received_at >= since)
        .group_by(GitHubDelivery.event, GitHubDelivery.outcome)
        .order_by(GitHubDelivery.event, GitHubDelivery.outcome)
    )
    return frame(session, stmt, DELIVERY_COLUMNS)


def list_repos(session: Session) -> list[str]:
    """Every repository with CI runs or job reports, sorted."""
    runs = set(session.scalars(select(CiRun.repo).distinct()))
    jobs = set(session.scalars(select(CiJobMetric.repo).distinct()))
    return sorted(runs | jobs)


@dataclass(frozen=True)
class CiPageData:
    """Everything the CI page shows for one repo selection, read in one session."""

    window: Window
    baseline: Window
    lead_times: pd.DataFrame
    baseline_lead_times: pd.DataFrame
    waiting: pd.DataFrame
    cache_daily: pd.DataFrame
    shards: pd.DataFrame
    quarantine: pd.DataFrame
    deliveries: pd.DataFrame
    stages: list[StageSummary] = field(default_factory=list)
    baseline_stages: list[StageSummary] = field(default_factory=list)


def ci_page_data(
    session: Session,
    *,
    window: Window,
    baseline: Window,
    as_of: datetime,
    repo: str | None = None,
    preview_pattern: str = DEFAULT_PREVIEW_PATTERN,
) -> CiPageData:
    """Read the CI page for ``window`` (and ``baseline`` for before/after) as of ``as_of``.

    SHAs still waiting are those whose first PR run started in the window and have no ready
    preview by min(as_of, window end).
    """
    waiting_until = min(as_of, window.end)
    lead_times = lead_time_stages_frame(
        session,
        lead_time_frame(session, window=window, repo=repo, preview_pattern=preview_pattern),
        preview_pattern=preview_pattern,
    )
    baseline_lead_times = lead_time_stages_frame(
        session,
        lead_time_frame(session, window=baseline, repo=repo, preview_pattern=preview_pattern),
        preview_pattern=preview_pattern,
    )
    return CiPageData(
        window=window,
        baseline=baseline,
        lead_times=lead_times,
        baseline_lead_times=baseline_lead_times,
        stages=summarize_stages(lead_times),
        baseline_stages=summarize_stages(baseline_lead_times),
        waiting=waiting_shas_frame(
            session,
            as_of=max(waiting_until, window.start + timedelta(seconds=1)),
            since=window.start,
            repo=repo,
            preview_pattern=preview_pattern,
        ),
        cache_daily=cache_hit_daily_frame(session, window=window, repo=repo),
        shards=shard_balance_frame(session, window=window, repo=repo),
        quarantine=quarantine_frame(session, as_of=as_of, window=window, repo=repo),
        deliveries=deliveries_frame(session, since=window.start),
    )


def utc_now() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------
# Lead-time stages (DV-1503): where the minutes of PR→preview go
# --------------------------------------------------------------------------------------------

STAGES = ("queue", "ci", "handoff", "boot")
STAGE_LABELS = {
    "queue": "Queue (run created → run started)",
    "ci": "CI (run started → first successful PR run finished)",
    "handoff": "Hand-off (CI success → preview deployment created)",
    "boot": "Preview boot (deployment created → first `success` status)",
}
STAGE_COLUMNS = [f"{s}_s" for s in STAGES]


def _first_values(
    session: Session, keys: set[ShaKey], stmt_for: Any
) -> dict[ShaKey, tuple[Any, ...]]:
    found: dict[ShaKey, tuple[Any, ...]] = {}
    for repo_name, chunk in per_repo(keys):
        for repo, sha, *values in session.execute(stmt_for(repo_name, chunk)):
            found[(repo, sha)] = tuple(values)
    return found


def lead_time_stages_frame(
    session: Session,
    lead_times: pd.DataFrame,
    *,
    preview_pattern: str = DEFAULT_PREVIEW_PATTERN,
) -> pd.DataFrame:
    """The lead-time frame with its stages per SHA: `queue_s`, `ci_s`, `handoff_s`, `boot_s`.

    The stages cut each SHA's own interval [started_at, preview_ready_at] at three moments: the
    first PR run's `run_started_at`, the first successful PR run's finish (`updated_at`), and the
    creation of the SHA's first preview deployment. Each moment is clamped between the previous
    one and the ready time, so the four stages always add up to `seconds`; a moment that is not
    known (no `run_started_at`, no successful run, no deployment row) gives that stage None and
    its time falls into the next known stage.
    """
    out = lead_times.copy()
    for column in STAGE_COLUMNS:
        out[column] = pd.Series([None] * len(out), index=out.index, dtype=object)
    if out.empty:
        return out
    keys = {(str(r), str(s)) for r, s in zip(out["repo"], out["sha"], strict=True)}

    def first_run(repo_name: str, chunk: list[Any]) -> Any:
        # The run that starts the clock: the first PR-triggered run by creation.
        return (
            select(CiRun.repo, CiRun.head_sha, CiRun.created_at, CiRun.run_started_at)
            .where(CiRun.repo == repo_name, CiRun.head_sha.in_(chunk))
            .where(CiRun.event.in_(PR_EVENTS))
            .order_by(CiRun.created_at.desc())
        )

    def ci_success(repo_name: str, chunk: list[Any]) -> Any:
        return (
            select(CiRun.repo, CiRun.head_sha, func.min(CiRun.updated_at))
            .where(CiRun.repo == repo_name, CiRun.head_sha.in_(chunk))
            .where(CiRun.event.in_(PR_EVENTS), CiRun.conclusion == "success")
            .group_by(CiRun.repo, CiRun.head_sha)
        )

    def deployments(repo_name: str, chunk: list[Any]) -> Any:
        return (
            select(Deployment.repo, Deployment.sha, Deployment.environment, Deployment.created_at)
            .where(Deployment.repo == repo_name, Deployment.sha.in_(chunk))
            .order_by(Deployment.created_at.desc())
        )

    # Ordered newest first: the dict keeps the last row seen, the earliest.
    runs = _first_values(session, keys, first_run)
    success = _first_values(session, keys, ci_success)
    regex = re.compile(pattern=preview_pattern)
    created: dict[ShaKey, datetime] = {}
    for repo_name, chunk in per_repo(keys):
        for repo, sha, env, at in session.execute(deployments(repo_name, chunk)):
            if regex.search(env):
                created[(repo, sha)] = _aware(at)
    stages: dict[str, list[float | None]] = {c: [] for c in STAGE_COLUMNS}
    for repo, sha, start, ready in zip(
        out["repo"], out["sha"], out["started_at"], out["preview_ready_at"], strict=True
    ):
        key = (str(repo), str(sha))
        run_started = runs.get(key, (None, None))[1]
        ci_done = success.get(key, (None,))[0]
        moments = [
            _aware(run_started) if run_started is not None else None,
            _aware(ci_done) if ci_done is not None else None,
            created.get(key),
        ]
        prev, end = as_utc(start), as_utc(ready)
        for column, moment in zip(STAGE_COLUMNS[:-1], moments, strict=True):
            if moment is None:  # unknown: its time is measured by the next known stage
                stages[column].append(None)
                continue
            cut = min(max(moment, prev), end)
            stages[column].append((cut - prev).total_seconds())
            prev = cut
        stages["boot_s"].append((end - prev).total_seconds())
    for column, values in stages.items():
        out[column] = pd.Series(values, index=out.index, dtype=object)
    return out


@dataclass(frozen=True)
class StageSummary:
    """p50/p95 (seconds) of one lead-time stage over the SHAs where it is known."""

    stage: str
    label: str
    p50_s: float | None
    p95_s: float | None
    count: int


def summarize_stages(stages: pd.DataFrame) -> list[StageSummary]:
    """p50/p95 of each stage column of :func:`lead_time_stages_frame` (unknown stages skipped)."""
    out = []
    for stage in STAGES:
        values = [v for v in stages.get(f"{stage}_s", []) if v is not None and v == v]
        out.append(
            StageSummary(
                stage,
                STAGE_LABELS[stage],
                percentile(values, 50.0),
                percentile(values, 95.0),
                len(values),
            )
        )
    return out
