"""Guarded actions end to end over HTTP and the CLI: a bundle pin served by `/bundles/<name>`,
fetched by an OPA-shaped client whose status report closes the drift; a DNS flip from the CLI
against moto; `audit verify` naming a modified row; the pages' layouts."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from actions.bundle_pin import policy_drift
from console.app import create_app
from console.auth.users import add_user
from console.cli.main import app as cli
from console.context import AppContext
from store.migrate import upgrade
from store.models import ActionAudit, BundlePin
from tests.conftest import make_settings
from tests.peers_actions import (
    BUNDLE,
    REV_1,
    REV_2,
    create_weighted_record,
    drop_audit_guard,
    moto_server,
    read_weights,
    register_revisions,
    report_status,
    reset_moto,
    route53_client,
)

ORIGIN = {"Origin": "http://localhost"}
PROXY = {"X-Forwarded-User": "sam", "X-Forwarded-Groups": "quarterdeck-sre", **ORIGIN}
runner = CliRunner()


@pytest.fixture
def pin_ctx(tmp_path: Path) -> Iterator[AppContext]:
    settings = make_settings(
        tmp_path,
        auth={"mode": "header", "allow_anonymous_read": False},
        opa={"status_token": "status-token-0123456789"},
        actions={
            "live_environments": ["dev"],
            "bundle_tokens": {"dev": "dev-bundle-token-0123", "prod": "prod-bundle-token-0123"},
            "bundle_dir": str(tmp_path / "registry"),
        },
    )
    context = AppContext.from_settings(settings)
    upgrade(context.engine)
    now = datetime.now(UTC)
    with context.session() as session:
        register_revisions(session, tmp_path / "registry", added_at=now - timedelta(days=3))
        session.add(
            BundlePin(
                bundle=BUNDLE,
                environment="dev",
                revision=REV_1,
                pinned_at=now - timedelta(days=2),
                pinned_by="ana",
                reason="",
            )
        )
        report_status(session, "dev", ["dev-opa-1"], REV_1, at=now - timedelta(minutes=10))
    yield context
    context.engine.dispose()


def manifest_revision(data: bytes) -> str:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        handle = tar.extractfile(".manifest")
        assert handle is not None
        return str(json.load(handle)["revision"])


def test_a_pin_is_served_to_opa_and_verified_when_its_status_reports_the_revision(
    pin_ctx: AppContext,
) -> None:
    client = create_app(pin_ctx).server.test_client()
    bearer = {"Authorization": "Bearer dev-bundle-token-0123"}
    old = client.get(f"/bundles/{BUNDLE}", headers=bearer)
    assert old.status_code == 200 and manifest_revision(old.data) == REV_1

    planned = client.post(
        "/api/actions/plan",
        json={
            "action": "opa.pin-bundle",
            "params": {"bundle": BUNDLE, "revision": REV_2},
            "environment": "dev",
            "reason": "viewers may read",
        },
        headers=PROXY,
    )
    plan_id = planned.json["plan"]["plan_id"]
    applied = client.post(
        f"/api/actions/{plan_id}/apply",
        json={"reason": "viewers may read", "live": True},
        headers=PROXY,
    )
    pending = client.post(f"/api/actions/{plan_id}/verify", headers=PROXY)

    fetched = client.get(
        f"/bundles/{BUNDLE}", headers={**bearer, "If-None-Match": old.headers["ETag"]}
    )
    again = client.get(
        f"/bundles/{BUNDLE}", headers={**bearer, "If-None-Match": fetched.headers["ETag"]}
    )
    status = {
        "labels": {"id": "dev-opa-1", "version": "1.4.2", "environment": "dev"},
        "bundles": {
            BUNDLE: {
                "name": BUNDLE,
                "active_revision": manifest_revision(fetched.data),
                "last_successful_activation": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            }
        },
        "plugins": {"bundle": {"state": "OK"}},
    }
    reported = client.post(
        "/ingest/opa/status",
        json=status,
        headers={"Authorization": "Bearer status-token-0123456789"},
    )
    verified = client.post(f"/api/actions/{plan_id}/verify", headers=PROXY)

    assert planned.status_code == 200, planned.json
    assert applied.status_code == 200 and applied.json["plan"]["status"] == "applied"
    assert (
        pending.status_code == 409
        and pending.json["message"] == "waiting for the change to be observed"
    )
    assert fetched.status_code == 200 and manifest_revision(fetched.data) == REV_2
    assert again.status_code == 304
    assert reported.status_code in (200, 202, 204), reported.data
    assert verified.status_code == 200 and verified.json["plan"]["status"] == "verified"
    with pin_ctx.session() as session:
        assert policy_drift(session, BUNDLE, "dev", REV_2) == {"instances": 1, "drifted": []}


def test_the_bundle_endpoint_serves_named_revisions_and_refuses_bad_tokens_and_tampering(
    pin_ctx: AppContext, tmp_path: Path
) -> None:
    client = create_app(pin_ctx).server.test_client()

    missing = client.get(f"/bundles/{BUNDLE}")
    wrong = client.get(f"/bundles/{BUNDLE}", headers={"Authorization": "Bearer nope"})
    unpinned = client.get(
        f"/bundles/{BUNDLE}", headers={"Authorization": "Bearer prod-bundle-token-0123"}
    )
    dev = {"Authorization": "Bearer dev-bundle-token-0123"}
    named = client.get(f"/bundles/{BUNDLE}?revision={REV_2}", headers=dev)
    unknown = client.get(f"/bundles/{BUNDLE}?revision=r999", headers=dev)
    (tmp_path / "registry" / BUNDLE / f"{REV_1}.tar.gz").write_bytes(b"\x1f\x8b tampered")
    tampered = client.get(
        f"/bundles/{BUNDLE}", headers={"Authorization": "Bearer dev-bundle-token-0123"}
    )

    assert missing.status_code == 401 and wrong.status_code == 401
    assert unpinned.status_code == 404
    assert named.status_code == 200 and manifest_revision(named.data) == REV_2
    assert unknown.status_code == 404 and "r999" in unknown.json["error"]
    assert tampered.status_code == 409 and "does not match the registry" in tampered.json["error"]


# -- CLI ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


def _env(tmp_path: Path, moto: str, **extra: str) -> dict[str, str]:
    return {
        "QUARTERDECK_DEMO_MODE": "true",
        "QUARTERDECK_VAR_DIR": str(tmp_path),
        "QUARTERDECK_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "QUARTERDECK_AWS__ENDPOINT_URL": moto,
        "QUARTERDECK_ACTIONS__LIVE_ENVIRONMENTS": '["stage"]',
        "QUARTERDECK_AUTH__MODE": "local",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        **extra,
    }


def test_cli_plans_and_applies_a_flip_as_a_signed_in_user_and_audit_verify_finds_tampering(
    tmp_path: Path, moto_url: str
) -> None:
    reset_moto(moto_url)
    r53 = route53_client(moto_url)
    zone, _ = create_weighted_record(r53)
    env = _env(tmp_path, moto_url)
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    added = runner.invoke(
        cli,
        ["users", "add", "sam", "--role", "sre", "--json"],
        env=env | {"QUARTERDECK_PASSWORD": "sam-password-123"},
    )
    assert added.exit_code == 0, added.output
    signed = env | {"QUARTERDECK_PASSWORD": "sam-password-123"}

    wrong = runner.invoke(
        cli,
        [
            "actions",
            "plan",
            "route53.flip-weights",
            "--record",
            "api.example.com",
            "--weights",
            "us-east=100,us-west=0",
            "--env",
            "stage",
            "--as",
            "sam",
        ],
        env=env | {"QUARTERDECK_PASSWORD": "nope"},
    )
    bad = runner.invoke(
        cli,
        [
            "actions",
            "plan",
            "route53.flip-weights",
            "--record",
            "api.example.com",
            "--weights",
            "us-east=256",
            "--env",
            "stage",
            "--as",
            "sam",
            "--json",
        ],
        env=signed,
    )
    plan = runner.invoke(
        cli,
        [
            "actions",
            "plan",
            "route53.flip-weights",
            "--record",
            "api.example.com",
            "--weights",
            "us-east=100,us-west=0",
            "--env",
            "stage",
            "--as",
            "sam",
            "--json",
        ],
        env=signed,
    )
    plan_id = json.loads(plan.output)["plan"]["plan_id"]
    dry = runner.invoke(
        cli,
        ["actions", "apply", plan_id, "--reason", "drain east", "--dry-run", "--as", "sam"],
        env=signed,
    )
    weights_after_dry = read_weights(r53, zone)
    live = runner.invoke(
        cli,
        ["actions", "apply", plan_id, "--reason", "drain east", "--live", "--as", "sam", "--json"],
        env=signed,
    )

    assert wrong.exit_code == 4 and "wrong password" in wrong.output
    assert (
        bad.exit_code == 1 and "us-east=256 is outside 0–255" in json.loads(bad.output)["message"]
    )
    assert plan.exit_code == 0, plan.output
    assert dry.exit_code == 0 and "dry run" in dry.output
    assert weights_after_dry == {"us-east": 50, "us-west": 50}
    assert live.exit_code == 0, live.output
    assert json.loads(live.output)["plan"]["status"] == "verified"
    assert read_weights(r53, zone) == {"us-east": 100, "us-west": 0}

    intact = runner.invoke(cli, ["audit", "verify", "--json"], env=env)
    assert intact.exit_code == 0 and json.loads(intact.output)["rows"] == 4
    context = AppContext.from_settings(
        make_settings(tmp_path, database_url=env["QUARTERDECK_DATABASE_URL"])
    )
    with context.session() as session:
        drop_audit_guard(session)
        session.execute(update(ActionAudit).where(ActionAudit.seq == 3).values(outcome="approved"))
    context.engine.dispose()
    broken = runner.invoke(cli, ["audit", "verify"], env=env)
    assert broken.exit_code == 1
    assert "audit chain BROKEN at row 3: row 3 was modified" in broken.output


def test_cli_refuses_to_act_in_header_mode(tmp_path: Path) -> None:
    env = _env(
        tmp_path, "http://127.0.0.1:1", QUARTERDECK_AUTH__MODE="header", QUARTERDECK_PASSWORD="x"
    )

    result = runner.invoke(cli, ["actions", "approve", "abc", "--as", "sam"], env=env)

    assert result.exit_code == 4 and "only in local auth mode" in result.output


# -- pages ----------------------------------------------------------------------------------------


def test_actions_and_audit_layouts_render_and_prefill_from_the_query(ctx: AppContext) -> None:
    from console.pages import actions as page
    from console.pages import audit

    create_app(ctx)
    layout = page.layout(action="opa.pin-bundle", env="prod", bundle="authz", revision=REV_2)

    text = json.dumps(layout.to_plotly_json(), default=lambda o: o.to_plotly_json())
    assert '"value": "opa.pin-bundle"' in text and '"value": "prod"' in text
    assert audit.layout() is not None


def test_audit_page_shows_a_broken_chain(ctx: AppContext) -> None:
    from console.pages.audit import show_audit
    from store.audit import append_audit

    create_app(ctx)
    with ctx.session() as session:
        for i in range(3):
            append_audit(
                session,
                actor="sam",
                action="route53.flip-weights",
                target="t",
                environment="stage",
                outcome="planned",
                detail={"i": i},
            )
    with ctx.session() as session:
        drop_audit_guard(session)
        session.execute(update(ActionAudit).where(ActionAudit.seq == 2).values(actor="mallory"))

    body = json.dumps(show_audit(1).to_plotly_json(), default=lambda o: o.to_plotly_json())

    assert "CHAIN BROKEN" in body and "first bad row 2: row 2 was modified" in body


def test_demo_users_are_seeded_once(ctx: AppContext) -> None:
    from console.auth.users import authenticate
    from demo.users import demo_password, feed

    with ctx.session() as session:
        first = feed(session)["users"]
        second = feed(session)["users"]
        sam = authenticate(session, "sam", demo_password("sam"))

    assert (first.stored, second.stored, second.duplicates) == (5, 0, 5)  # one per role
    assert sam is not None and sam.roles == frozenset({"sre"})
    with ctx.session() as session, pytest.raises(Exception, match="already exists"):
        add_user(session, "sam", "another-password-1", ["sre"])
