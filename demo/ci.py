"""Extra CI demo data: end-to-end jobs that report JUnit XML (with an in-job rerun flake and test
owners) and a few webhook deliveries, fed through the same ingest code as `/ingest/ci` and
`/ingest/github`.

Deterministic (derived from the core demo's runs, ordered by id) and idempotent (natural keys).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collectors import ci_ingest, github
from store.ingest import IngestResult
from store.models import CiRun

REPO = "acme/web"
SPRINT_START = datetime(2025, 11, 10, tzinfo=UTC)
SPRINT_END = datetime(2025, 11, 24, tzinfo=UTC)
FLAKY_EVERY = 6  # one e2e job in six needs a rerun of the saved-card payment test
E2E_TESTS = (
    ("e2e.checkout", "test_pay_with_saved_card", "team-payments"),
    ("e2e.checkout", "test_guest_checkout", "team-payments"),
    ("e2e.search", "test_facets", "team-discovery"),
)


def junit_xml(run_id: int, flaky: bool) -> str:
    """An e2e JUnit report as Surefire/pytest-rerunfailures write it (rerun → `flakyFailure`)."""
    cases = []
    for i, (classname, name, owner) in enumerate(E2E_TESTS):
        rerun = (
            '<flakyFailure message="TimeoutError: card iframe not ready" type="TimeoutError">'
            "page.wait_for_selector timed out after 30000 ms</flakyFailure>"
            if flaky and i == 0
            else ""
        )
        seconds = 8.0 + (run_id + 3 * i) % 17
        cases.append(
            f'<testcase classname="{classname}" name="{name}" time="{seconds:.1f}">'
            f'<properties><property name="owner" value="{owner}"/></properties>{rerun}'
            "</testcase>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><testsuites name="e2e">'
        f'<testsuite name="e2e" tests="{len(cases)}" failures="0" errors="0">'
        + "".join(cases)
        + "</testsuite></testsuites>"
    )


def feed(session: Session) -> dict[str, IngestResult]:
    """Post an `e2e` job report (JUnit XML) for each completed sprint run of the top repo."""
    runs = session.execute(
        select(CiRun.run_id, CiRun.run_attempt, CiRun.head_sha, CiRun.updated_at)
        .where(CiRun.repo == REPO, CiRun.status == "completed", CiRun.conclusion == "success")
        .where(CiRun.created_at >= SPRINT_START, CiRun.created_at < SPRINT_END)
        .order_by(CiRun.run_id, CiRun.run_attempt)
    ).all()
    reports = []
    for n, (run_id, attempt, sha, updated) in enumerate(runs):
        finished = (updated or SPRINT_START) + timedelta(minutes=2)
        reports.append(
            {
                "repo": REPO,
                "run_id": run_id,
                "run_attempt": attempt,
                "job": "e2e",
                "head_sha": sha,
                "finished_at": finished.isoformat(),
                "duration_s": 240.0 + (run_id % 90),
                "cache": [{"key": "playwright-browsers", "hit": n % 5 != 0}],
                "junit_xml": junit_xml(run_id, flaky=n % FLAKY_EVERY == 0),
            }
        )
    ci = ci_ingest.ingest_job_reports(session, reports, received_at=SPRINT_END)
    hooks = IngestResult()
    unused_events: list[tuple[str, dict[str, Any]]] = [
        ("ping", {"zen": "Design for failure.", "hook_id": 27}),
        ("star", {"action": "created", "repository": {"full_name": REPO}}),
        ("push", {"ref": "refs/heads/main", "repository": {"full_name": REPO}}),
    ]
    for i, (event, payload) in enumerate(unused_events):
        result, _ = github.ingest_delivery(
            session,
            delivery_id=f"demo-sprint-27-{i}",
            event=event,
            payload=payload,
            received_at=SPRINT_START + timedelta(days=1, minutes=i),
        )
        hooks.merge(result)
    return {ci_ingest.SOURCE: ci, "github-webhook": hooks}
