"""One receiver-auth rule and bounded parsing, walked over EVERY `/ingest/*` route of the real app.

The routes are read from Flask's url_map, so a receiver added later is covered (or fails the
"every route has a documented demo credential" test) without anyone remembering this file.
Built as `make run` builds it: `console.app.create_app` over demo-mode settings.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from console.app import create_app
from console.context import AppContext
from console.settings.github import DEMO_CI_TOKEN, DEMO_WEBHOOK_SECRET
from console.settings.ingest import DEMO_EXPORTS_TOKEN, DEMO_INCIDENTS_TOKEN, DEMO_OPA_TOKEN
from store.migrate import upgrade
from store.models import IngestReject
from tests.conftest import PROJECT_ROOT, make_settings

GUIDE = PROJECT_ROOT / "docs" / "guide.md"
DEEP = 100_000

# How each receiver authenticates in demo mode: a bearer token, or the webhook's HMAC secret.
DEMO_CREDENTIALS: dict[str, tuple[str, str]] = {
    "/ingest/github": ("hmac", DEMO_WEBHOOK_SECRET),
    "/ingest/ci": ("bearer", DEMO_CI_TOKEN),
    "/ingest/exports": ("bearer", DEMO_EXPORTS_TOKEN),
    "/ingest/incidents": ("bearer", DEMO_INCIDENTS_TOKEN),
    "/ingest/alertmanager": ("bearer", DEMO_INCIDENTS_TOKEN),
    "/ingest/opa/logs": ("bearer", DEMO_OPA_TOKEN),
    "/ingest/opa/logs/<partition>": ("bearer", DEMO_OPA_TOKEN),
    "/ingest/opa/status": ("bearer", DEMO_OPA_TOKEN),
    "/ingest/opa/status/<partition>": ("bearer", DEMO_OPA_TOKEN),
}


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flask, AppContext]]:
    tmp = tmp_path_factory.mktemp("receivers")
    context = AppContext.from_settings(make_settings(tmp, demo_mode=True))
    upgrade(context.engine)
    yield create_app(context).server, context
    context.engine.dispose()


def ingest_routes(server: Flask) -> list[str]:
    return sorted(
        rule.rule
        for rule in server.url_map.iter_rules()
        if rule.rule.startswith("/ingest/") and "POST" in (rule.methods or set())
    )


def concrete(rule: str) -> str:
    return rule.replace("<partition>", "stage")


def _routes() -> list[str]:
    # Read the real app's map at collection time so every route gets its own test id.
    with tempfile.TemporaryDirectory() as tmp:
        ctx = AppContext.from_settings(make_settings(Path(tmp), demo_mode=True))
        try:
            return ingest_routes(create_app(ctx).server)
        finally:
            ctx.engine.dispose()


ROUTES = _routes()


def credentialed(rule: str, body: bytes) -> dict[str, str]:
    """Headers that authenticate ``body`` on ``rule`` with its documented demo credential."""
    kind, secret = DEMO_CREDENTIALS[rule]
    if kind == "bearer":
        return {"Authorization": f"Bearer {secret}"}
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-Hub-Signature-256": f"sha256={digest}",
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": str(uuid.uuid4()),
    }


def post(client: FlaskClient, rule: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    response = client.post(
        concrete(rule), data=body, headers={"Content-Type": "application/json", **headers}
    )
    return response.status_code, response.get_json(silent=True) or {}


def test_the_app_has_the_receivers_this_file_knows_and_no_others(
    demo_app: tuple[Flask, AppContext],
) -> None:
    server, _ = demo_app
    assert ingest_routes(server) == ROUTES
    # A new receiver must get a documented demo credential here (and in docs/guide.md).
    assert sorted(DEMO_CREDENTIALS) == ROUTES


@pytest.mark.parametrize("rule", ROUTES)
def test_unauthenticated_post_is_401_in_demo_mode(
    demo_app: tuple[Flask, AppContext], rule: str
) -> None:
    server, _ = demo_app
    client = server.test_client()

    missing = client.post(concrete(rule), data=b"[]", content_type="application/json")
    wrong = client.post(
        concrete(rule),
        data=b"[]",
        content_type="application/json",
        headers={
            "Authorization": "Bearer not-the-demo-token",
            "X-Hub-Signature-256": "sha256=" + "0" * 64,
        },
    )

    for response in (missing, wrong):
        assert response.status_code == 401, response.get_data(as_text=True)
        assert response.headers.get("WWW-Authenticate"), "401 without WWW-Authenticate"
        body = response.get_json()
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]


@pytest.mark.parametrize("rule", ROUTES)
def test_documented_demo_credential_is_accepted(
    demo_app: tuple[Flask, AppContext], rule: str
) -> None:
    server, _ = demo_app
    body = b"{}"
    status, answer = post(server.test_client(), rule, body, credentialed(rule, body))
    # Past the credential check: whatever the body's fate, it is not refused as unauthenticated.
    assert status not in (401, 403, 503), answer


def test_every_demo_credential_is_written_in_the_guide() -> None:
    guide = GUIDE.read_text()
    assert "Demo credentials" in guide
    for _, secret in DEMO_CREDENTIALS.values():
        assert secret in guide


Deep = Callable[[], bytes]
DEEP_BODIES: dict[str, Deep] = {
    "arrays": lambda: b"[" * DEEP + b"]" * DEEP,
    "objects": lambda: b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "unclosed": lambda: b"[" * DEEP,
}


@pytest.mark.parametrize("shape", sorted(DEEP_BODIES))
@pytest.mark.parametrize("rule", ROUTES)
def test_json_nested_100000_deep_is_400_with_a_reason(
    demo_app: tuple[Flask, AppContext], rule: str, shape: str
) -> None:
    server, _ = demo_app
    body = DEEP_BODIES[shape]()

    status, answer = post(server.test_client(), rule, body, credentialed(rule, body))

    assert status == 400, answer
    reason = " ".join([answer["error"], *answer.get("problems", [])])
    assert "nested deeper than" in reason, reason


@pytest.mark.parametrize("rule", [r for r in ROUTES if r.startswith("/ingest/opa/")])
def test_deep_gzip_body_to_opa_is_400_not_a_recursion_error(
    demo_app: tuple[Flask, AppContext], rule: str
) -> None:
    server, ctx = demo_app
    body = gzip.compress(b"[" * DEEP + b"]" * DEEP)
    headers = credentialed(rule, body) | {"Content-Encoding": "gzip"}

    status, answer = post(server.test_client(), rule, body, headers)

    assert status == 400 and "deeper" in answer["error"], answer
    with ctx.session() as session:  # dead-lettered, so Ingest health shows the sender's mistake
        assert session.scalar(select(func.count()).select_from(IngestReject)) >= 1
