"""GitHub as a source of CI timings: webhook payloads (and REST objects of the same shape).

Webhook events and REST responses carry the same objects (`pull_request`, `workflow_run`,
`deployment`, `deployment_status`, `issue`), so one set of transforms serves both the
receiver and the poller. Runs are mapped to PRs by head SHA because fork PRs arrive with an
empty `pull_requests` list.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collectors.base import InvalidItem, parse_optional_time, parse_time, require
from store.ingest import IngestResult, record_rejects, upsert
from store.models import (
    CiRun,
    Deployment,
    DeploymentStatus,
    Incident,
    Postmortem,
    PullRequest,
    PullRequestCommit,
)

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
    """Upsert workflow run attempts; status and conclusion move forward as the run does."""
    result = IngestResult()
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
