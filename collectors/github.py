"""GitHub as a source of CI timings: webhook payloads (and REST objects of the same shape).

Webhook events and REST responses carry the same objects (`pull_request`, `workflow_run`,
`deployment`, `deployment_status`, `issue`), so one set of transforms serves both the
receiver and the poller. Runs are mapped to PRs by head SHA because fork PRs arrive with an
empty `pull_requests` list.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from collectors.base import InvalidItem, parse_optional_time, parse_time, require, sync_run
from collectors.github_client import GitHubClient, Page
from store.db import session_scope
from store.ingest import IngestResult, record_rejects, upsert, utcnow
from store.models import (
    CiRun,
    Deployment,
    DeploymentStatus,
    Incident,
    Postmortem,
    PullRequest,
    PullRequestCommit,
)
from store.models.ci import CiJob, GitHubCursor, GitHubDelivery

log = logging.getLogger(__name__)

SOURCE = "github"
HANDLED_EVENTS = frozenset({"pull_request", "workflow_run", "deployment_status", "issues", "ping"})
_INCIDENT_KEY = re.compile(r"\b(INC-\d+)\b", re.IGNORECASE)


def _repo(payload: dict[str, Any]) -> str:
    repository = require(payload, "repository", dict)
    return str(require(repository, "full_name", str, where="repository"))


def transform_pull_request(repo: str, pr: dict[str, Any]) -> dict[str, Any]:
    """Map a GitHub pull request object to a `pull_requests` row."""
    head = require(pr, "head", dict, where="pull_request")
    user = pr.get("user") or {}
    return {
        "repo": repo,
        "number": require(pr, "number", int, where="pull_request"),
        "title": str(pr.get("title") or "")[:500],
        "author": user.get("login"),
        "state": "merged" if pr.get("merged_at") else str(pr.get("state") or "open"),
        "head_sha": require(head, "sha", str, where="pull_request.head"),
        "head_ref": head.get("ref"),
        "html_url": pr.get("html_url"),
        "created_at": parse_time(pr.get("created_at"), field="pull_request.created_at"),
        "updated_at": parse_optional_time(pr.get("updated_at"), field="pull_request.updated_at"),
        "merged_at": parse_optional_time(pr.get("merged_at"), field="pull_request.merged_at"),
    }


def transform_workflow_run(repo: str, run: dict[str, Any]) -> dict[str, Any]:
    """Map a workflow run object to a `ci_runs` row (one row per attempt)."""
    prs = run.get("pull_requests") or []
    return {
        "repo": repo,
        "run_id": require(run, "id", int, where="workflow_run"),
        "run_attempt": int(run.get("run_attempt") or 1),
        "workflow_name": str(run.get("name") or ""),
        "event": require(run, "event", str, where="workflow_run"),
        "head_sha": require(run, "head_sha", str, where="workflow_run"),
        "head_branch": run.get("head_branch"),
        "pr_number": prs[0].get("number") if prs and isinstance(prs[0], dict) else None,
        "status": require(run, "status", str, where="workflow_run"),
        "conclusion": run.get("conclusion"),
        "html_url": run.get("html_url"),
        "created_at": parse_time(run.get("created_at"), field="workflow_run.created_at"),
        "run_started_at": parse_optional_time(
            run.get("run_started_at"), field="workflow_run.run_started_at"
        ),
        "updated_at": parse_optional_time(run.get("updated_at"), field="workflow_run.updated_at"),
    }


def transform_deployment(repo: str, deployment: dict[str, Any]) -> dict[str, Any]:
    """Map a deployment object to a `deployments` row."""
    return {
        "repo": repo,
        "deployment_id": require(deployment, "id", int, where="deployment"),
        "sha": require(deployment, "sha", str, where="deployment"),
        "ref": deployment.get("ref"),
        "environment": require(deployment, "environment", str, where="deployment"),
        "created_at": parse_time(deployment.get("created_at"), field="deployment.created_at"),
    }


def transform_deployment_status(
    repo: str, deployment_id: int, status: dict[str, Any], environment: str
) -> dict[str, Any]:
    """Map a deployment status object to a `deployment_statuses` row."""
    return {
        "repo": repo,
        "status_id": require(status, "id", int, where="deployment_status"),
        "deployment_id": deployment_id,
        "state": require(status, "state", str, where="deployment_status"),
        "environment": str(status.get("environment") or environment),
        "environment_url": status.get("environment_url") or None,
        "created_at": parse_time(status.get("created_at"), field="deployment_status.created_at"),
    }


def load_pull_request(
    session: Session, row: dict[str, Any], *, pushed_at: datetime
) -> IngestResult:
    """Upsert a PR (latest state wins) and remember its head SHA and when it became the head."""
    result = IngestResult()
    update = ("title", "state", "head_sha", "head_ref", "html_url", "updated_at", "merged_at")
    result.add(upsert(session, PullRequest, [row], conflict=("repo", "number"), update=update))
    commit = {"repo": row["repo"], "number": row["number"], "sha": row["head_sha"]}
    result.add(
        upsert(
            session,
            PullRequestCommit,
            [{**commit, "pushed_at": pushed_at}],
            conflict=("repo", "number", "sha"),
        )
    )
    return result


def load_workflow_runs(session: Session, rows: list[dict[str, Any]]) -> IngestResult:
    """Upsert workflow run attempts; status and conclusion move forward as the run does.

    A run from a fork PR arrives with an empty `pull_requests`; its PR is then found by head SHA
    among the SHAs PRs are known to have had.
    """
    result = IngestResult()
    orphans = {r["head_sha"] for r in rows if r["pr_number"] is None}
    if orphans:
        repos = {r["repo"] for r in rows}
        known = {
            (repo, sha): number
            for repo, sha, number in session.execute(
                select(PullRequestCommit.repo, PullRequestCommit.sha, PullRequestCommit.number)
                .where(PullRequestCommit.sha.in_(orphans))
                .where(PullRequestCommit.repo.in_(repos))
            )
        }
        rows = [
            {**r, "pr_number": known.get((r["repo"], r["head_sha"]))}
            if r["pr_number"] is None
            else r
            for r in rows
        ]
    update = ("status", "conclusion", "updated_at", "run_started_at", "pr_number")
    result.add(
        upsert(session, CiRun, rows, conflict=("repo", "run_id", "run_attempt"), update=update)
    )
    return result


def load_deployment_status(
    session: Session, deployment: dict[str, Any], status: dict[str, Any]
) -> IngestResult:
    """Store a deployment and one of its statuses."""
    result = IngestResult()
    result.add(upsert(session, Deployment, [deployment], conflict=("repo", "deployment_id")))
    result.add(upsert(session, DeploymentStatus, [status], conflict=("repo", "status_id")))
    return result


def transform_postmortem_issue(repo: str, issue: dict[str, Any]) -> dict[str, Any] | None:
    """Map an issue labelled `postmortem` (the IX-1303 bot's output) to a postmortem row."""
    labels = {str(label.get("name", "")).lower() for label in issue.get("labels") or []}
    if "postmortem" not in labels:
        return None
    title = str(issue.get("title") or "")
    match = _INCIDENT_KEY.search(title) or _INCIDENT_KEY.search(str(issue.get("body") or ""))
    if not match:
        raise InvalidItem(f"issue #{issue.get('number')}: postmortem names no incident (INC-…)")
    body = str(issue.get("body") or "")
    items = [
        {"text": m.group(2).strip(), "done": m.group(1).lower() == "x"}
        for m in re.finditer(r"^\s*[-*] \[( |x|X)\] (.+)$", body, re.MULTILINE)
    ]
    user = issue.get("user") or {}
    return {
        "incident_key": match.group(1).upper(),
        "generated_at": parse_time(issue.get("created_at"), field="issue.created_at"),
        "generated_by": str(user.get("login") or "github"),
        "issue_url": issue.get("html_url"),
        "action_items": items,
        "body_markdown": body[:50_000],
    }


def ingest_webhook(
    session: Session, event: str, payload: dict[str, Any], *, received_at: datetime
) -> IngestResult:
    """Store what one webhook delivery says; unknown events are counted as ignored.

    An invalid payload is dead-lettered with its reason (the caller answers 4xx to GitHub,
    which does not retry deliveries on its own).
    """
    result = IngestResult()
    try:
        if event not in HANDLED_EVENTS or event == "ping":
            result.ignored += 1
            return result
        repo = _repo(payload)
        if event == "pull_request":
            pr = require(payload, "pull_request", dict)
            row = transform_pull_request(repo, pr)
            action = payload.get("action")
            pushed_at = (
                row["created_at"] if action == "opened" else (row["updated_at"] or received_at)
            )
            result.merge(load_pull_request(session, row, pushed_at=pushed_at))
        elif event == "workflow_run":
            run = transform_workflow_run(repo, require(payload, "workflow_run", dict))
            result.merge(load_workflow_runs(session, [run]))
        elif event == "deployment_status":
            deployment = transform_deployment(repo, require(payload, "deployment", dict))
            status = transform_deployment_status(
                repo,
                deployment["deployment_id"],
                require(payload, "deployment_status", dict),
                deployment["environment"],
            )
            result.merge(load_deployment_status(session, deployment, status))
        elif event == "issues":
            row_or_none = transform_postmortem_issue(repo, require(payload, "issue", dict))
            if row_or_none is None:
                result.ignored += 1
                return result
            known = session.scalar(
                select(Incident.id).where(Incident.incident_key == row_or_none["incident_key"])
            )
            if known is None:
                raise InvalidItem(f"postmortem for unknown incident {row_or_none['incident_key']}")
            result.add(
                upsert(
                    session,
                    Postmortem,
                    [row_or_none],
                    conflict=("incident_key", "generated_at"),
                    update=("issue_url", "action_items", "body_markdown"),
                )
            )
    except InvalidItem as exc:
        result.rejected += 1
        result.reasons.append(f"{event}: {exc}")
        record_rejects(
            session,
            source=SOURCE,
            rejects=[(None, f"{event}: {exc}", payload)],
            received_at=received_at,
        )
    return result


def ingest_delivery(
    session: Session,
    *,
    delivery_id: str,
    event: str,
    payload: dict[str, Any],
    received_at: datetime,
) -> tuple[IngestResult, bool]:
    """Store one webhook delivery once; returns its result and whether it was a redelivery.

    The delivery row and the rows it produces share the caller's transaction: a concurrent
    redelivery waits on the unique key and then finds it taken. A rejected payload records no
    delivery, so the caller can roll back and answer 4xx without keeping anything but the
    dead letter.
    """
    claimed = upsert(
        session,
        GitHubDelivery,
        [
            {
                "delivery_id": delivery_id[:100],
                "event": event[:50],
                "outcome": "received",
                "received_at": received_at,
            }
        ],
        conflict=("delivery_id",),
    )
    if not claimed.inserted:
        return IngestResult(duplicates=1), True
    result = ingest_webhook(session, event, payload, received_at=received_at)
    outcome = "rejected" if result.rejected else "ignored" if result.ignored else "stored"
    session.query(GitHubDelivery).filter(GitHubDelivery.delivery_id == delivery_id[:100]).update(
        {"outcome": outcome}
    )
    return result, False


# --------------------------------------------------------------------------------------------
# The poller: fetch (I/O) → transform (pure) → load (upsert), one page per transaction
# --------------------------------------------------------------------------------------------

PER_PAGE = 100
RUN_EVENTS_FOR_JOBS = frozenset({"completed"})


def transform_job(repo: str, job: dict[str, Any]) -> dict[str, Any]:
    """Map a workflow job object to a `ci_jobs` row."""
    return {
        "repo": repo,
        "job_id": require(job, "id", int, where="job"),
        "run_id": require(job, "run_id", int, where="job"),
        "run_attempt": int(job.get("run_attempt") or 1),
        "name": str(job.get("name") or "")[:200],
        "head_sha": require(job, "head_sha", str, where="job"),
        "status": require(job, "status", str, where="job"),
        "conclusion": job.get("conclusion"),
        "created_at": parse_optional_time(job.get("created_at"), field="job.created_at"),
        "started_at": parse_optional_time(job.get("started_at"), field="job.started_at"),
        "completed_at": parse_optional_time(job.get("completed_at"), field="job.completed_at"),
    }


def load_jobs(session: Session, rows: list[dict[str, Any]]) -> IngestResult:
    """Upsert jobs; status, conclusion and times move forward as the job does."""
    result = IngestResult()
    update = ("status", "conclusion", "started_at", "completed_at")
    result.add(upsert(session, CiJob, rows, conflict=("repo", "job_id"), update=update))
    return result


def load_pull_requests(session: Session, rows: list[dict[str, Any]]) -> IngestResult:
    """Upsert polled PRs in one batch; each head SHA is remembered as of the PR's last update."""
    result = IngestResult()
    update = ("title", "state", "head_sha", "head_ref", "html_url", "updated_at", "merged_at")
    result.add(upsert(session, PullRequest, rows, conflict=("repo", "number"), update=update))
    commits = [
        {
            "repo": row["repo"],
            "number": row["number"],
            "sha": row["head_sha"],
            "pushed_at": row["updated_at"] or row["created_at"],
        }
        for row in rows
    ]
    result.add(upsert(session, PullRequestCommit, commits, conflict=("repo", "number", "sha")))
    return result


def fetch_pull_requests(client: GitHubClient, repo: str, url: str | None, etag: str | None) -> Page:
    """GET /repos/{owner}/{repo}/pulls?state=all&sort=updated&direction=desc (one page)."""
    if url:
        return client.get_page(url)
    params = {"state": "all", "sort": "updated", "direction": "desc", "per_page": PER_PAGE}
    return client.get_page(f"/repos/{repo}/pulls", params, etag=etag)


def fetch_workflow_runs(
    client: GitHubClient, repo: str, url: str | None, etag: str | None, since: datetime | None
) -> Page:
    """GET /repos/{owner}/{repo}/actions/runs?per_page=100[&created=>=since] (one page)."""
    if url:
        return client.get_page(url, key="workflow_runs")
    params: dict[str, Any] = {"per_page": PER_PAGE}
    if since is not None:
        params["created"] = ">=" + since.strftime("%Y-%m-%dT%H:%M:%SZ")
    return client.get_page(f"/repos/{repo}/actions/runs", params, etag=etag, key="workflow_runs")


def fetch_jobs(client: GitHubClient, repo: str, run_id: int) -> list[dict[str, Any]]:
    """GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs?filter=all (all attempts and pages)."""
    return client.get_all(
        f"/repos/{repo}/actions/runs/{run_id}/jobs",
        {"filter": "all", "per_page": PER_PAGE},
        key="jobs",
    )


def fetch_run_attempt(client: GitHubClient, repo: str, run_id: int, attempt: int) -> dict[str, Any]:
    """GET /repos/{owner}/{repo}/actions/runs/{run_id}/attempts/{attempt_number}.

    The runs list shows only a run's latest attempt; earlier attempts (the failed try before
    a re-run) are read one by one.
    """
    return client.get_object(f"/repos/{repo}/actions/runs/{run_id}/attempts/{attempt}")


def fetch_deployments(client: GitHubClient, repo: str, url: str | None, etag: str | None) -> Page:
    """GET /repos/{owner}/{repo}/deployments?per_page=100 (one page, newest first)."""
    if url:
        return client.get_page(url)
    return client.get_page(f"/repos/{repo}/deployments", {"per_page": PER_PAGE}, etag=etag)


def fetch_deployment_statuses(
    client: GitHubClient, repo: str, deployment_id: int
) -> list[dict[str, Any]]:
    """GET /repos/{owner}/{repo}/deployments/{deployment_id}/statuses (all pages)."""
    return client.get_all(
        f"/repos/{repo}/deployments/{deployment_id}/statuses", {"per_page": PER_PAGE}
    )


@dataclass
class Cursor:
    """A (repo, endpoint) cursor as read from `github_cursors`."""

    high_water: datetime | None = None
    pass_high_water: datetime | None = None
    next_url: str | None = None
    etag: str | None = None


def get_cursor(session: Session, repo: str, endpoint: str) -> Cursor:
    """Read the cursor for (repo, endpoint); a fresh one when the endpoint was never polled."""
    row = session.scalar(
        select(GitHubCursor).where(GitHubCursor.repo == repo, GitHubCursor.endpoint == endpoint)
    )
    if row is None:
        return Cursor()
    return Cursor(row.high_water, row.pass_high_water, row.next_url, row.etag)


def save_cursor(session: Session, repo: str, endpoint: str, cursor: Cursor) -> None:
    """Write the cursor for (repo, endpoint) in the caller's transaction."""
    upsert(
        session,
        GitHubCursor,
        [
            {
                "repo": repo,
                "endpoint": endpoint,
                "high_water": cursor.high_water,
                "pass_high_water": cursor.pass_high_water,
                "next_url": cursor.next_url,
                "etag": cursor.etag,
                "updated_at": utcnow(),
            }
        ],
        conflict=("repo", "endpoint"),
        update=("high_water", "pass_high_water", "next_url", "etag", "updated_at"),
    )


@dataclass
class SyncOptions:
    """How far back to go and what to fetch besides the list endpoints."""

    since: datetime | None = None
    rescan: timedelta = timedelta(hours=6)
    jobs: bool = True
    endpoints: tuple[str, ...] = ("pulls", "runs", "deployments")
    max_pages: int | None = None  # stop after this many pages (a bounded slice of a backfill)


@dataclass
class RepoSyncReport:
    """What one repository's sync did, per endpoint."""

    repo: str
    result: IngestResult = field(default_factory=IngestResult)
    pages: dict[str, int] = field(default_factory=dict)
    not_modified: list[str] = field(default_factory=list)
    complete: bool = True


Prepared = tuple[list[Any], list[tuple[int | None, str, Any]]]


def _transform_all(
    items: Iterable[dict[str, Any]], fn: Callable[[dict[str, Any]], Any]
) -> Prepared:
    rows: list[Any] = []
    rejects: list[tuple[int | None, str, Any]] = []
    for index, item in enumerate(items):
        try:
            rows.append(fn(item))
        except InvalidItem as exc:
            rejects.append((index, str(exc), item))
    return rows, rejects


def _stamp(item: dict[str, Any], stamp_field: str) -> datetime | None:
    try:
        return parse_optional_time(item.get(stamp_field), field=stamp_field)
    except InvalidItem:
        return None


def _status_transform(
    repo: str, deployment: dict[str, Any]
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def transform(status: dict[str, Any]) -> dict[str, Any]:
        return transform_deployment_status(
            repo, deployment["deployment_id"], status, deployment["environment"]
        )

    return transform


class _Endpoint:
    """One list endpoint: how to fetch a page, which field orders it, how to prepare and load."""

    def __init__(
        self,
        name: str,
        stamp_field: str,
        fetch: Callable[[str | None, str | None, datetime | None], Page],
        prepare: Callable[[list[dict[str, Any]]], Prepared],
        load: Callable[[Session, list[Any]], IngestResult],
    ) -> None:
        self.name = name
        self.stamp_field = stamp_field
        self.fetch = fetch
        self.prepare = prepare
        self.load = load


def _endpoints(client: GitHubClient, repo: str, options: SyncOptions) -> dict[str, _Endpoint]:
    def prepare_runs(items: list[dict[str, Any]]) -> Prepared:
        runs, rejects = _transform_all(items, lambda r: transform_workflow_run(repo, r))
        earlier = [
            fetch_run_attempt(client, repo, run["run_id"], n)
            for run in runs
            for n in range(1, run["run_attempt"])
        ]
        older, bad = _transform_all(earlier, lambda r: transform_workflow_run(repo, r))
        runs.extend(older)
        rejects.extend(bad)
        jobs: list[dict[str, Any]] = []
        if options.jobs:
            for run in runs:
                if run["status"] in RUN_EVENTS_FOR_JOBS and run not in older:
                    found, bad = _transform_all(
                        fetch_jobs(client, repo, run["run_id"]), lambda j: transform_job(repo, j)
                    )
                    jobs.extend(found)
                    rejects.extend(bad)
        return [(runs, jobs)], rejects

    def load_runs(session: Session, prepared: list[Any]) -> IngestResult:
        result = IngestResult()
        for runs, jobs in prepared:
            result.merge(load_workflow_runs(session, runs))
            result.merge(load_jobs(session, jobs))
        return result

    def prepare_deployments(items: list[dict[str, Any]]) -> Prepared:
        deployments, rejects = _transform_all(items, lambda d: transform_deployment(repo, d))
        pairs: list[Any] = []
        for dep in deployments:
            statuses, bad = _transform_all(
                fetch_deployment_statuses(client, repo, dep["deployment_id"]),
                _status_transform(repo, dep),
            )
            rejects.extend(bad)
            pairs.append((dep, statuses))
        return pairs, rejects

    def load_deployments(session: Session, pairs: list[Any]) -> IngestResult:
        result = IngestResult()
        deployments = [dep for dep, _ in pairs]
        statuses = [status for _, found in pairs for status in found]
        result.add(upsert(session, Deployment, deployments, conflict=("repo", "deployment_id")))
        result.add(upsert(session, DeploymentStatus, statuses, conflict=("repo", "status_id")))
        return result

    return {
        "pulls": _Endpoint(
            "pulls",
            "updated_at",
            lambda url, etag, _since: fetch_pull_requests(client, repo, url, etag),
            lambda items: _transform_all(items, lambda p: transform_pull_request(repo, p)),
            load_pull_requests,
        ),
        "runs": _Endpoint(
            "runs",
            "created_at",
            lambda url, etag, since: fetch_workflow_runs(client, repo, url, etag, since),
            prepare_runs,
            load_runs,
        ),
        "deployments": _Endpoint(
            "deployments",
            "created_at",
            lambda url, etag, _since: fetch_deployments(client, repo, url, etag),
            prepare_deployments,
            load_deployments,
        ),
    }


def sync_endpoint(
    factory: sessionmaker[Session],
    client: GitHubClient,
    repo: str,
    endpoint: str,
    options: SyncOptions,
    report: RepoSyncReport,
    *,
    on_page: Callable[[str, int], None] | None = None,
) -> None:
    """Walk one endpoint newest → oldest down to its lower bound, one transaction per page.

    The list endpoints are ordered newest first, so a pass starts at page 1 and stops at the
    first item older than the lower bound (`--since`, else the last pass's high-water mark less
    `rescan`, which picks up runs and deployments that changed after they were first seen).
    Each page is stored together with the cursor that points at the next page: a killed pass
    resumes there and re-reads at most one page. Items created meanwhile only push older items
    further down, so resuming may re-read a few (upserts keep them once) but never skips one.
    The high-water mark moves only when a pass completes; the ETag of page 1 is kept so an
    unchanged endpoint costs one 304, which GitHub does not count against the rate limit.
    """
    spec = _endpoints(client, repo, options)[endpoint]
    with session_scope(factory) as session:
        cursor = get_cursor(session, repo, endpoint)
    lower = options.since
    if lower is None and cursor.high_water is not None:
        lower = cursor.high_water - options.rescan
    resuming = cursor.next_url is not None
    url = cursor.next_url
    pass_high = cursor.pass_high_water if resuming else None
    first_etag: str | None = None
    pages = 0
    while True:
        page = spec.fetch(url, None if resuming or url else cursor.etag, lower)
        if page.not_modified:
            report.not_modified.append(endpoint)
            return
        pages += 1
        stamps = [_stamp(item, spec.stamp_field) for item in page.items]
        if url is None:  # page 1 of a fresh pass
            first_etag = page.etag
            known = [t for t in stamps if t is not None]
            pass_high = max(known) if known else cursor.high_water
        in_range = [
            item
            for item, t in zip(page.items, stamps, strict=True)
            if lower is None or t is None or t >= lower
        ]
        done = len(in_range) < len(page.items) or page.next_url is None
        rows, rejects = spec.prepare(in_range)
        with session_scope(factory) as session:
            result = spec.load(session, rows)
            if rejects:
                result.rejected += record_rejects(
                    session,
                    source=SOURCE,
                    rejects=[(i, f"{repo} {endpoint}: {r}", p) for i, r, p in rejects],
                )
                result.reasons.extend(f"{repo} {endpoint}: {r}" for _, r, _ in rejects)
            if done:
                next_cursor = Cursor(
                    high_water=max(
                        (t for t in (pass_high, cursor.high_water) if t is not None), default=None
                    ),
                    etag=first_etag if not resuming else None,
                )
            else:
                next_cursor = Cursor(
                    high_water=cursor.high_water,
                    pass_high_water=pass_high,
                    next_url=page.next_url,
                    etag=cursor.etag,
                )
            save_cursor(session, repo, endpoint, next_cursor)
        report.result.merge(result)
        report.pages[endpoint] = report.pages.get(endpoint, 0) + 1
        if on_page is not None:
            on_page(endpoint, len(page.items))
        if done:
            return
        if options.max_pages is not None and pages >= options.max_pages:
            report.complete = False
            return
        url = page.next_url


def sync_repo(
    factory: sessionmaker[Session],
    client: GitHubClient,
    repo: str,
    options: SyncOptions | None = None,
    *,
    on_page: Callable[[str, int], None] | None = None,
) -> RepoSyncReport:
    """Poll PRs, runs (with jobs) and deployments (with statuses) of ``repo``; record the run.

    PRs go first so that runs of fork PRs, whose `pull_requests` is empty, find their PR by head
    SHA. A failure (GitHub down after retries, a rate limit too long to wait) is recorded in
    `sync_runs` with its reason and re-raised; cursors keep the last stored page.
    """
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise ValueError(f"repo {repo!r}: expected owner/name")
    options = options or SyncOptions()
    report = RepoSyncReport(repo)
    with sync_run(factory, SOURCE) as run_result:
        for endpoint in options.endpoints:
            sync_endpoint(factory, client, repo, endpoint, options, report, on_page=on_page)
        run_result.merge(report.result)
    return report
