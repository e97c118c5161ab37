"""`GET /bundles/<name>` as real OPA polls it, against the seeded demo (what `make run` serves):
the pinned revision is served as registered (stable sha256 across processes, ETag, 304 on
`If-None-Match`, never rebuilt per poll), and a pin of the older demo revision passes
`bundle-signature-valid` in the Actions rules (issue 11)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from actions.base import Actor
from console.app import create_app
from console.context import AppContext
from console.settings.opa import DEMO_BUNDLE_TOKENS
from console.wiring import build_service, registry_dir
from store.models import BundleRevision
from tests.conftest import PROJECT_ROOT, make_settings

STAGE = {"Authorization": f"Bearer {DEMO_BUNDLE_TOKENS['stage']}"}


@pytest.fixture
def seeded(demo_ctx: AppContext, tmp_path: Path) -> Iterator[AppContext]:
    """A writable copy of the session's seeded demo (a file copy, not a second seed)."""
    from tests.console.test_evidence import copy_demo

    context = copy_demo(demo_ctx, tmp_path)
    yield context
    context.engine.dispose()


def _registered(ctx: AppContext, revision: str) -> str:
    with ctx.session() as session:
        sha = session.scalar(
            select(BundleRevision.sha256).where(
                BundleRevision.bundle == "authz", BundleRevision.revision == revision
            )
        )
    assert sha is not None
    return str(sha)


def test_the_pinned_demo_revision_is_served_with_a_stable_sha256(seeded: AppContext) -> None:
    from demo.seed import REV_NEW

    app = create_app(seeded).server
    client = app.test_client()
    first = client.get("/bundles/authz", headers=STAGE)
    assert first.status_code == 200, first.get_json()
    sha = hashlib.sha256(first.data).hexdigest()
    assert first.headers["ETag"] == f'"{sha}"'
    assert sha == _registered(seeded, REV_NEW)
    # A new process (a restart of the console) builds the very same bytes.
    fresh = subprocess.run(
        [
            sys.executable,
            "-c",
            "import hashlib, sys; from demo.seed import bundle_tarball; "
            "print(hashlib.sha256(bundle_tarball(sys.argv[1])).hexdigest())",
            REV_NEW,
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert fresh == sha
    # Polls: 304 for the ETag OPA sends back (also in a list, weak), the same bytes otherwise.
    for header in (first.headers["ETag"], f'"other", W/{first.headers["ETag"]}'):
        again = client.get("/bundles/authz", headers={**STAGE, "If-None-Match": header})
        assert again.status_code == 304
        assert again.headers["ETag"] == first.headers["ETag"]
        assert again.data == b""
    for _ in range(5):
        assert client.get("/bundles/authz", headers=STAGE).data == first.data
    stale = client.get("/bundles/authz", headers={**STAGE, "If-None-Match": '"stale"'})
    assert stale.status_code == 200
    # Read (here: built) once, then served from memory: never rebuilt per poll.
    assert app.extensions["quarterdeck_bundles"].loads == 1


def test_demo_tokens_decide_the_environment_and_others_get_401(seeded: AppContext) -> None:
    from demo.seed import REV_NEW

    client = create_app(seeded).server.test_client()
    for env, token in DEMO_BUNDLE_TOKENS.items():
        served = client.get("/bundles/authz", headers={"Authorization": f"Bearer {token}"})
        assert served.status_code == 200, (env, served.get_json())
        assert served.headers["ETag"] == f'"{_registered(seeded, REV_NEW)}"'
    refused = client.get("/bundles/authz", headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401
    assert "error" in refused.get_json()
    assert client.get("/bundles/authz").status_code == 401


def test_bytes_that_differ_from_the_registry_are_refused(seeded: AppContext) -> None:
    from demo.seed import REV_OLD

    # A stored copy that was altered after registration: refused, never served.
    path = registry_dir(seeded.settings) / "authz" / f"{REV_OLD}.tar.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not the registered tarball")
    try:
        client = create_app(seeded).server.test_client()
        answer = client.get(f"/bundles/authz?revision={REV_OLD}", headers=STAGE)
        assert answer.status_code == 409
        assert "does not match the registry" in answer.get_json()["error"]
    finally:
        path.unlink()


def test_a_pin_of_the_older_demo_revision_passes_every_rule_and_awaits_approval(
    seeded: AppContext,
) -> None:
    from demo.seed import REV_OLD

    service = build_service(seeded.settings)
    with seeded.session() as session:
        answer = service.plan(
            session,
            Actor("sam", frozenset({"sre"})),
            "opa.pin-bundle",
            {"bundle": "authz", "revision": REV_OLD},
            "stage",
            reason="roll back to r41",
        )
        assert answer.plan is not None
        rules = {r["name"]: r for r in answer.plan.rules}
    signature = rules["bundle-signature-valid"]
    assert signature["passed"], signature["reason"]
    assert signature["reason"] == "signature verified (key demo)"
    assert "tampered" not in str(rules)
    # The demo erases `/input/user/token`, which the demo policy never reads: the decisions are
    # replayed (not "not evaluated"), and the older revision flips none of them.
    blocking = {name: r["reason"] for name, r in rules.items() if not r["passed"]}
    assert blocking == {}, blocking
    assert "0 not evaluated" in rules["impact-preview"]["reason"] or (
        "not evaluated" not in rules["impact-preview"]["reason"]
    ), rules["impact-preview"]["reason"]
    assert answer.ok and answer.plan.status == "planned", answer.message


def test_a_stored_copy_is_served_as_stored(ctx: AppContext, tmp_path: Path) -> None:
    """`quarterdeck bundles add` keeps the registered bytes; the source file may go away."""
    from datetime import UTC, datetime

    from collectors.bundles import BundleObject, load_registry
    from demo.seed import REV_NEW, bundle_tarball, demo_verification_keys
    from store.models import BundlePin

    settings = make_settings(
        tmp_path,
        database_url=str(ctx.engine.url),
        demo_mode=False,
        secret_key="a-real-secret-for-this-test-0123456789",
        actions={"bundle_tokens": {"stage": "stage-token-0123456789"}},
    )
    data = bundle_tarball(REV_NEW)
    source = tmp_path / "upload.tar.gz"
    source.write_bytes(data)
    at = datetime(2026, 12, 1, tzinfo=UTC)
    with ctx.session() as session:
        load_registry(
            session,
            [BundleObject("authz", str(source), data)],
            keys=demo_verification_keys(),
            added_at=at,
            store_dir=registry_dir(settings),
        )
        session.add(
            BundlePin(
                bundle="authz", environment="stage", revision=REV_NEW, pinned_at=at, pinned_by="a"
            )
        )
    source.unlink()
    other = AppContext.from_settings(settings)
    try:
        client = create_app(other).server.test_client()
        served = client.get(
            "/bundles/authz", headers={"Authorization": "Bearer stage-token-0123456789"}
        )
        assert served.status_code == 200, served.get_json()
        assert served.data == data
    finally:
        other.engine.dispose()


def test_the_demo_opa_config_matches_what_make_run_serves(seeded: AppContext) -> None:
    """docs/examples/opa-demo.yaml, read as OPA reads it, against the seeded demo console."""
    import yaml

    from collectors.bundles import SigningConfig, VerificationKey, opa_verdict, read_bundle
    from console.settings.ingest import DEMO_OPA_TOKEN

    config = yaml.safe_load((PROJECT_ROOT / "docs/examples/opa-demo.yaml").read_text())
    services = config["services"]
    assert all(s["url"].startswith("http://127.0.0.1:8050") for s in services.values())
    bundle = config["bundles"]["authz"]
    service = services[bundle["service"]]
    labels = config["labels"]
    assert labels["instance"] and labels["environment"] == "stage"
    token = service["credentials"]["bearer"]["token"]
    assert token == DEMO_BUNDLE_TOKENS[labels["environment"]]
    ingest = services[config["decision_logs"]["service"]]
    assert ingest["credentials"]["bearer"]["token"] == DEMO_OPA_TOKEN
    assert ingest["url"].endswith("/ingest/opa")
    assert config["status"]["service"] == config["decision_logs"]["service"]
    reporting = config["decision_logs"]["reporting"]
    assert reporting["buffer_type"] == "event" and reporting["max_delay_seconds"] < 60

    client = create_app(seeded).server.test_client()
    served = client.get(f"/{bundle['resource']}", headers={"Authorization": f"Bearer {token}"})
    assert served.status_code == 200
    keys = {
        kid: VerificationKey(kid, k["algorithm"], k["key"]) for kid, k in config["keys"].items()
    }
    problem, key_id, files = opa_verdict(
        read_bundle(served.data), keys, SigningConfig(bundle["signing"]["keyid"])
    )
    assert (problem, key_id, files) == (None, "demo", 5)  # manifest, data, three policies
    status = client.post(
        "/ingest/opa/status",
        json={
            "labels": {**labels, "id": "5b0f-uuid", "version": "1.9.0"},
            "bundles": {"authz": {"name": "authz", "active_revision": "2025.11.12-r42"}},
        },
        headers={"Authorization": f"Bearer {DEMO_OPA_TOKEN}"},
    )
    assert status.status_code == 200, status.get_json()
