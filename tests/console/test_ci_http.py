"""The CI receivers and API over real HTTP: webhook signatures and redeliveries, CI job reports
(JSON and JUnit XML), the flaky quarantine, and the lead-time API."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import func, select
from werkzeug.serving import make_server

from console.context import AppContext
from console.http.ci import make_blueprint
from store.migrate import upgrade
from store.models import CiJobMetric, CiTestResult, IngestReject, PullRequest
from store.models.ci import GitHubDelivery, QuarantinedTest
from tests.conftest import make_settings
from tests.github_replay import (
    EXPECTED_P50,
    EXPECTED_P95,
    EXPECTED_SECONDS,
    REPO,
    SHA,
    T0,
    pull,
    story_webhooks,
)

SECRET = "whsec-test-1f2e3d"
CI_TOKEN = "ci-token-test-9a8b7c"


@pytest.fixture
def ci_ctx(tmp_path: Path) -> Iterator[AppContext]:
    settings = make_settings(
        tmp_path,
        demo_mode=False,
        secret_key="test-secret-key-not-a-placeholder",
        github={"webhook_secret": SECRET, "ci_ingest_token": CI_TOKEN},
    )
    context = AppContext.from_settings(settings)
    upgrade(context.engine)
    yield context
    context.engine.dispose()


@pytest.fixture
def base_url(ci_ctx: AppContext) -> Iterator[str]:
    app = Flask("ci-test")
    app.register_blueprint(make_blueprint(ci_ctx))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def count(ctx: AppContext, model: Any) -> int:
    with ctx.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def deliver(
    base_url: str,
    event: str,
    payload: dict[str, Any],
    *,
    secret: str | None = SECRET,
    delivery: str | None = None,
) -> requests.Response:
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "User-Agent": "GitHub-Hookshot/abc123",
    }
    if secret is not None:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = f"sha256={digest}"
    return requests.post(f"{base_url}/ingest/github", data=body, headers=headers, timeout=10)


def opened(number: int = 7) -> dict[str, Any]:
    return {
        "action": "opened",
        "number": number,
        "pull_request": pull(REPO, number, "e" * 40, T0),
        "repository": {"full_name": REPO},
    }


# --------------------------------------------------------------------------------------------
# POST /ingest/github
# --------------------------------------------------------------------------------------------


def test_signed_delivery_is_stored(base_url: str, ci_ctx: AppContext) -> None:
    resp = deliver(base_url, "pull_request", opened())

    assert resp.status_code == 200
    assert resp.json()["stored"] >= 1
    with ci_ctx.session() as session:
        assert session.scalars(select(PullRequest.number)).all() == [7]


@pytest.mark.parametrize("secret", ["not-the-secret", None], ids=["wrong", "missing"])
def test_wrong_or_missing_signature_is_401_and_stores_nothing(
    base_url: str, ci_ctx: AppContext, secret: str | None
) -> None:
    resp = deliver(base_url, "pull_request", opened(), secret=secret)

    assert resp.status_code == 401
    assert "X-Hub-Signature-256" in resp.json()["error"]
    assert count(ci_ctx, PullRequest) == 0
    assert count(ci_ctx, GitHubDelivery) == 0


def test_redelivery_is_stored_once(base_url: str, ci_ctx: AppContext) -> None:
    first = deliver(base_url, "pull_request", opened(), delivery="d-1")
    again = deliver(base_url, "pull_request", opened(), delivery="d-1")

    assert first.status_code == 200 and again.status_code == 200
    assert again.json() == {"delivery": "d-1", "duplicate": True}
    assert count(ci_ctx, PullRequest) == 1
    assert count(ci_ctx, GitHubDelivery) == 1


def test_unused_event_is_accepted_ignored_and_counted(base_url: str, ci_ctx: AppContext) -> None:
    resp = deliver(base_url, "star", {"action": "created", "repository": {"full_name": REPO}})

    assert resp.status_code == 202
    assert resp.json()["ignored"] is True
    with ci_ctx.session() as session:
        outcomes = session.execute(select(GitHubDelivery.event, GitHubDelivery.outcome)).all()
    assert outcomes == [("star", "ignored")]


def test_invalid_payload_is_400_naming_the_field_and_only_dead_lettered(
    base_url: str, ci_ctx: AppContext
) -> None:
    payload = {"action": "completed", "repository": {"full_name": REPO}, "workflow_run": {"id": 1}}

    resp = deliver(base_url, "workflow_run", payload)

    assert resp.status_code == 400
    assert "workflow_run.event: missing" in resp.json()["error"]
    assert count(ci_ctx, GitHubDelivery) == 0
    assert count(ci_ctx, IngestReject) == 1


def test_malformed_json_with_a_valid_signature_is_400(base_url: str) -> None:
    body = b"{not json"
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    resp = requests.post(
        f"{base_url}/ingest/github",
        data=body,
        headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": "d-9",
            "X-Hub-Signature-256": f"sha256={digest}",
            "Content-Type": "application/json",
        },
        timeout=10,
    )

    assert resp.status_code == 400
    assert "not a JSON webhook payload" in resp.json()["error"]


# --------------------------------------------------------------------------------------------
# POST /ingest/ci
# --------------------------------------------------------------------------------------------

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites>
  <testsuite name="pytest" tests="3" failures="{failures}" errors="0" skipped="1" time="3.2">
    <testcase classname="tests.test_checkout" name="test_retry_budget" time="1.25">
      <properties><property name="owner" value="team-checkout"/></properties>
      {failure}
    </testcase>
    <testcase classname="tests.test_api" name="test_ok" time="0.5"/>
    <testcase classname="tests.test_api" name="test_later" time="0.0">
      <skipped message="not yet"/>
    </testcase>
  </testsuite>
</testsuites>
"""


def job_report(attempt: int, *, failing: bool, **extra: Any) -> dict[str, Any]:
    failure = '<failure message="AssertionError">assert 3 == 2</failure>' if failing else ""
    return {
        "repo": REPO,
        "run_id": 9003,
        "run_attempt": attempt,
        "job": "test (1/2)",
        "head_sha": SHA[103],
        "finished_at": (T0 + timedelta(minutes=10 * attempt)).isoformat(),
        "duration_s": 250.0,
        "shard": {"index": 1, "total": 2},
        "cache": [{"key": "pnpm-abc", "hit": True}, {"key": "docker-layers", "hit": False}],
        "junit_xml": JUNIT.format(failures=int(failing), failure=failure),
        **extra,
    }


def post_ci(base_url: str, body: Any, token: str | None = CI_TOKEN, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if isinstance(body, bytes):
        return requests.post(f"{base_url}/ingest/ci", data=body, headers=headers, timeout=10, **kw)
    return requests.post(f"{base_url}/ingest/ci", json=body, headers=headers, timeout=10, **kw)


@pytest.mark.parametrize("token", ["wrong-token", None], ids=["wrong", "missing"])
def test_ci_report_without_a_valid_bearer_token_is_401(
    base_url: str, ci_ctx: AppContext, token: str | None
) -> None:
    resp = post_ci(base_url, job_report(1, failing=False), token=token)

    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert count(ci_ctx, CiJobMetric) == 0


def test_ci_report_with_junit_is_stored_once_even_when_resent(
    base_url: str, ci_ctx: AppContext
) -> None:
    first = post_ci(base_url, job_report(1, failing=False))
    again = post_ci(base_url, job_report(1, failing=False))

    assert first.status_code == 200 and first.json()["stored"] == 4  # 1 job + 3 test cases
    assert again.status_code == 200 and again.json()["stored"] == 0
    with ci_ctx.session() as session:
        metric = session.scalars(select(CiJobMetric)).one()
        outcomes = dict(session.execute(select(CiTestResult.test_id, CiTestResult.outcome)).all())
    assert (metric.cache_lookups, metric.cache_hits, metric.shard_index) == (2, 1, 1)
    assert outcomes == {
        "tests.test_checkout::test_retry_budget": "passed",
        "tests.test_api::test_ok": "passed",
        "tests.test_api::test_later": "skipped",
    }


def test_malformed_json_is_400_and_stores_nothing(base_url: str, ci_ctx: AppContext) -> None:
    resp = post_ci(base_url, b'{"repo": "acme/web", ')

    assert resp.status_code == 400
    assert resp.json()["error"].startswith("body: not JSON (Expecting property name")
    assert count(ci_ctx, CiJobMetric) == 0


def test_one_bad_report_in_a_batch_is_400_naming_the_field_and_stores_nothing(
    base_url: str, ci_ctx: AppContext
) -> None:
    bad = job_report(2, failing=False, shard={"index": 3, "total": 2})

    resp = post_ci(base_url, [job_report(1, failing=False), bad])

    assert resp.status_code == 400
    assert resp.json()["problems"] == ["[1] shard.index: 3 is greater than shard.total 2"]
    assert count(ci_ctx, CiJobMetric) == 0
    assert count(ci_ctx, CiTestResult) == 0


def test_raw_junit_xml_body_with_report_fields_in_the_query_is_accepted(
    base_url: str, ci_ctx: AppContext
) -> None:
    params = {
        "repo": REPO,
        "run_id": "9003",
        "run_attempt": "1",
        "job": "test (2/2)",
        "head_sha": SHA[103],
        "finished_at": "2025-11-12T09:10:00Z",
        "duration_s": "180.5",
        "shard": "2/2",
    }
    resp = requests.post(
        f"{base_url}/ingest/ci",
        params=params,
        data=JUNIT.format(failures=0, failure="").encode(),
        headers={"Authorization": f"Bearer {CI_TOKEN}", "Content-Type": "application/xml"},
        timeout=10,
    )

    assert resp.status_code == 200
    assert count(ci_ctx, CiTestResult) == 3


def test_failed_then_passed_on_retry_is_quarantined_with_owner_and_expiry(
    base_url: str, ci_ctx: AppContext
) -> None:
    assert post_ci(base_url, job_report(1, failing=True)).status_code == 200
    assert post_ci(base_url, job_report(2, failing=False)).status_code == 200

    with ci_ctx.session() as session:
        entries = session.scalars(select(QuarantinedTest)).all()
    assert [(q.test_id, q.owner) for q in entries] == [
        ("tests.test_checkout::test_retry_budget", "team-checkout")
    ]
    assert entries[0].expires_at == T0 + timedelta(minutes=20) + timedelta(days=14)
    listed = requests.get(f"{base_url}/api/ci/quarantine", params={"repo": REPO}, timeout=10)
    assert listed.status_code == 200
    # Expired long ago (2025) by the real clock: the CI-facing list only shows active entries.
    assert listed.json()["tests"] == []


# --------------------------------------------------------------------------------------------
# GET /api/ci/lead-times
# --------------------------------------------------------------------------------------------


def test_lead_time_api_returns_rows_percentiles_and_waiting_shas(base_url: str) -> None:
    for event, payload in story_webhooks():
        assert deliver(base_url, event, payload).status_code in (200, 202)

    resp = requests.get(
        f"{base_url}/api/ci/lead-times",
        params={"repo": REPO, "from": "2025-11-12", "to": "2025-11-12T18:00:00Z"},
        timeout=10,
    )

    body = resp.json()
    assert resp.status_code == 200
    assert (body["p50_s"], body["p95_s"], body["count"]) == (EXPECTED_P50, EXPECTED_P95, 3)
    assert {r["pr"]: r["seconds"] for r in body["rows"]} == EXPECTED_SECONDS
    first = next(r for r in body["rows"] if r["pr"] == 101)
    assert first["started_at"] == "2025-11-12T09:00:10Z"
    assert first["preview_ready_at"] == "2025-11-12T09:12:10Z"
    assert first["pr_url"] == f"https://github.com/{REPO}/pull/101"
    assert body["waiting"]["count"] == 1 and body["waiting"]["rows"][0]["sha"] == SHA[104]
    assert "first `success` deployment status" in body["definition"]


def test_lead_time_api_names_a_bad_parameter(base_url: str) -> None:
    resp = requests.get(f"{base_url}/api/ci/lead-times", params={"from": "yesterday"}, timeout=10)

    assert resp.status_code == 400
    assert resp.json()["error"].startswith("from: 'yesterday'")


def test_form_encoded_delivery_is_verified_on_the_raw_body_and_stored(
    base_url: str, ci_ctx: AppContext
) -> None:
    from urllib.parse import urlencode

    body = urlencode({"payload": json.dumps(opened(8))}).encode()
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    resp = requests.post(
        f"{base_url}/ingest/github",
        data=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": "d-form",
            "X-Hub-Signature-256": f"sha256={digest}",
        },
        timeout=10,
    )

    assert resp.status_code == 200
    with ci_ctx.session() as session:
        assert session.scalars(select(PullRequest.number)).all() == [8]


def test_receivers_refuse_requests_until_their_secrets_are_set(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, demo_mode=False, secret_key="test-secret-key-not-a-placeholder"
    )
    context = AppContext.from_settings(settings)
    app = Flask("ci-unconfigured")
    app.register_blueprint(make_blueprint(context))
    client = app.test_client()

    hook = client.post("/ingest/github", data=b"{}", headers={"X-Hub-Signature-256": "sha256=0"})
    report = client.post("/ingest/ci", json={}, headers={"Authorization": "Bearer x"})

    assert hook.status_code == 503
    assert "QUARTERDECK_GITHUB__WEBHOOK_SECRET" in hook.get_json()["error"]
    assert report.status_code == 503
    assert "QUARTERDECK_INGEST__CI_TOKEN" in report.get_json()["error"]
    context.engine.dispose()
