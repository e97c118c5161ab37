"""PinOpaBundle: impact preview with two known Rego revisions, signature and soak rules, and the
Kubernetes provider against an API emulator that honours resourceVersion (409) and dryRun."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from actions.base import ActionPolicy, Actor, PlanView
from actions.bundle_pin import (
    KubernetesPins,
    PinConfig,
    PinDrift,
    PinOpaBundle,
    RegistryPins,
    bundle_files,
    pin_drift,
    replay_decisions,
)
from actions.registry import ActionService
from console.context import AppContext
from console.http.policy import make_blueprint
from store.db import session_factory
from store.models import BundleRevision, OpaDecision, OpaStatusReport
from tests.conftest import CAPTURES, FIXED_NOW, FakeClock, make_settings, peer_missing
from tests.peers_actions import (
    BUNDLE,
    REV_1,
    REV_2,
    KubeEmulator,
    bundle_bytes,
    record_decisions,
    register_revisions,
    report_status,
)

SRE = Actor("sam", frozenset({"sre"}))
ADMIN = Actor("ada", frozenset({"admin"}))
NOW = FIXED_NOW  # the service's clock reads this instant too (see pin_service)


@pytest.fixture
def session(ctx: AppContext, tmp_path: Path) -> Iterator[Session]:
    with ctx.session() as s:
        register_revisions(s, tmp_path / "registry", added_at=NOW - timedelta(days=10))
        yield s


def loader(tmp_path: Path) -> Any:
    def load(revision: BundleRevision) -> bytes | None:
        path = Path(revision.source)
        return path.read_bytes() if path.is_file() else None

    return load


def pin_service(
    tmp_path: Path, *providers: Any, clock: FakeClock | None = None, **config: Any
) -> ActionService:
    clock = clock or FakeClock(NOW)
    action = PinOpaBundle(
        list(providers) or [RegistryPins(clock=clock)],
        loader(tmp_path),
        PinConfig(**config),
        clock=clock,
    )
    return ActionService(
        [action], ActionPolicy(live_environments=frozenset({"dev", "stage"})), clock=clock
    )


def test_impact_preview_counts_the_known_flips_between_two_revisions(session: Session) -> None:
    record_decisions(session, "dev", at=NOW - timedelta(hours=1))
    decisions = list(session.query(OpaDecision).order_by(OpaDecision.decision_id))

    same = replay_decisions(bundle_files(bundle_bytes(REV_1)), decisions)
    report = replay_decisions(bundle_files(bundle_bytes(REV_2)), decisions)

    assert (same.replayed, same.flipped) == (6, 0)
    assert (report.replayed, report.allow_to_deny, report.deny_to_allow) == (6, 0, 3)
    assert {e["decision_id"] for e in report.examples} == {"dev-d2", "dev-d3", "dev-d4"}
    assert all(e["was"] == "deny" and e["now"] == "allow" for e in report.examples)


def test_impact_above_the_threshold_blocks_and_only_an_admin_override_passes(
    session: Session, tmp_path: Path
) -> None:
    record_decisions(session, "dev", at=NOW - timedelta(hours=1))
    svc = pin_service(tmp_path, max_flip_pct=10)

    planned = svc.plan(session, SRE, "opa.pin-bundle", {"bundle": BUNDLE, "revision": REV_2}, "dev")
    assert planned.plan is not None
    impact = next(r for r in planned.plan.rules if r["name"] == "impact-preview")
    refused = svc.apply(
        session, SRE, planned.plan.plan_id, reason="ship", live=True, override=["impact-preview"]
    )
    applied = svc.apply(
        session,
        ADMIN,
        planned.plan.plan_id,
        reason="known: viewers may read",
        live=True,
        override=["impact-preview"],
    )

    assert planned.blocked_by == ["impact-preview"]
    assert impact["reason"].startswith("0 allow→deny, 3 deny→allow of 6 replayed (50.0%")
    assert planned.plan.preview["impact"]["deny_to_allow"] == 3
    assert not refused.ok and "needs the admin role" in refused.message
    assert applied.ok, applied.message
    assert planned.plan.overrides == ["impact-preview"]


def test_a_preview_that_could_not_evaluate_its_decisions_blocks_like_a_flip(
    session: Session, tmp_path: Path
) -> None:
    record_decisions(session, "dev", at=NOW - timedelta(hours=1))
    for decision in session.query(OpaDecision).filter(OpaDecision.decision_id != "dev-d0"):
        decision.masked = ["/input/user"]  # OPA logged the input after system.log.mask
    session.flush()
    svc = pin_service(tmp_path, max_not_evaluated_pct=50)

    planned = svc.plan(session, SRE, "opa.pin-bundle", {"bundle": BUNDLE, "revision": REV_1}, "dev")
    assert planned.plan is not None
    impact = next(r for r in planned.plan.rules if r["name"] == "impact-preview")

    assert planned.blocked_by == ["impact-preview"]
    assert "0 allow→deny, 0 deny→allow of 1 replayed" in impact["reason"]
    assert "5 not evaluated (83.3%, limit 50%), mostly: input masked" in impact["reason"]
    assert planned.plan.preview["impact"]["not_evaluated"] == 5


def test_unknown_and_tampered_revisions_cannot_be_overridden(
    session: Session, tmp_path: Path
) -> None:
    svc = pin_service(tmp_path)
    unknown = svc.plan(
        session, SRE, "opa.pin-bundle", {"bundle": BUNDLE, "revision": "r999"}, "dev"
    )
    (tmp_path / "registry" / BUNDLE / f"{REV_2}.tar.gz").write_bytes(bundle_bytes(REV_1))
    tampered = svc.plan(
        session, SRE, "opa.pin-bundle", {"bundle": BUNDLE, "revision": REV_2}, "dev"
    )
    assert unknown.plan is not None and tampered.plan is not None

    forced = svc.apply(
        session,
        ADMIN,
        tampered.plan.plan_id,
        reason="force",
        live=True,
        override=["bundle-signature-valid"],
    )

    assert unknown.blocked_by[:1] == ["revision-exists"]
    assert "r999 is not in the registry" in unknown.plan.rules[0]["reason"]
    assert "bundle-signature-valid" in tampered.blocked_by
    sig = next(r for r in tampered.plan.rules if r["name"] == "bundle-signature-valid")
    assert sig["reason"].startswith("tampered: tarball sha256")
    assert not forced.ok and forced.message == "cannot be overridden: bundle-signature-valid"


def test_production_needs_the_revision_to_have_soaked_in_stage(
    session: Session, tmp_path: Path
) -> None:
    svc = pin_service(tmp_path, soak=timedelta(hours=24))
    report_status(session, "stage", ["stage-opa-1"], REV_2, at=NOW - timedelta(hours=2))
    fresh = svc.plan(session, SRE, "opa.pin-bundle", {"bundle": BUNDLE, "revision": REV_2}, "prod")
    report_status(session, "stage", ["stage-opa-1"], REV_2, at=NOW - timedelta(hours=30))
    soaked = svc.plan(session, SRE, "opa.pin-bundle", {"bundle": BUNDLE, "revision": REV_2}, "prod")

    assert "staged-rollout" in fresh.blocked_by
    assert "staged-rollout" not in soaked.blocked_by


def test_verify_waits_for_every_instance_to_report_the_revision(
    session: Session, tmp_path: Path
) -> None:
    svc = pin_service(tmp_path)
    report_status(session, "dev", ["dev-opa-1", "dev-opa-2"], REV_1, at=NOW - timedelta(minutes=5))
    planned = svc.plan(session, SRE, "opa.pin-bundle", {"bundle": BUNDLE, "revision": REV_2}, "dev")
    assert planned.plan is not None
    svc.apply(session, SRE, planned.plan.plan_id, reason="roll", live=True)
    pending = svc.verify(session, SRE, planned.plan.plan_id)
    report_status(session, "dev", ["dev-opa-1"], REV_2, at=NOW)
    half = svc.verify(session, SRE, planned.plan.plan_id)
    report_status(session, "dev", ["dev-opa-2"], REV_2, at=NOW)
    done = svc.verify(session, SRE, planned.plan.plan_id)

    assert planned.plan.status == "verified"
    assert not pending.ok and not half.ok and done.ok


def test_verify_past_the_deadline_marks_the_pin_unverified_and_rollback_is_offered(
    session: Session, tmp_path: Path
) -> None:
    clock = FakeClock(NOW)
    svc = pin_service(tmp_path, clock=clock)
    svc.policy = ActionPolicy(live_environments=frozenset({"dev"}), verify_timeout_s=0.0)
    report_status(session, "dev", ["dev-opa-1"], REV_1, at=NOW - timedelta(minutes=5))
    first = svc.plan(session, SRE, "opa.pin-bundle", {"bundle": BUNDLE, "revision": REV_1}, "dev")
    assert first.plan is not None
    svc.apply(session, SRE, first.plan.plan_id, reason="baseline", live=True)
    clock.advance(minutes=1)
    second = svc.plan(session, SRE, "opa.pin-bundle", {"bundle": BUNDLE, "revision": REV_2}, "dev")
    assert second.plan is not None
    svc.apply(session, SRE, second.plan.plan_id, reason="roll", live=True)

    verdict = svc.verify(session, SRE, second.plan.plan_id)
    back = svc.rollback(session, SRE, second.plan.plan_id, reason="OPA did not pick it up")

    assert not verdict.ok and second.plan.status == "unverified"
    assert back.plan is not None and back.plan.params["revision"] == REV_1


# -- Kubernetes provider ------------------------------------------------------------------------

OPA_CONFIG = {
    "services": {"quarterdeck": {"url": "https://quarterdeck.example.com"}},
    "bundles": {
        BUNDLE: {"service": "quarterdeck", "resource": f"bundles/{BUNDLE}?revision={REV_1}"}
    },
}


def _configmap(kube: KubeEmulator) -> dict[str, Any]:
    return kube.objects[("opa-dev", "opa-config")]


def _resource(kube: KubeEmulator) -> str:
    return str(
        yaml.safe_load(_configmap(kube)["data"]["config.yaml"])["bundles"][BUNDLE]["resource"]
    )


@pytest.fixture
def k8s(kube: KubeEmulator) -> KubernetesPins:
    api = kube.core_api()
    api.create_namespaced_config_map(
        "opa-dev",
        {"metadata": {"name": "opa-config"}, "data": {"config.yaml": yaml.safe_dump(OPA_CONFIG)}},
    )
    return KubernetesPins(
        api, namespace="opa", namespaces={"dev": "opa-dev"}, config_map="opa-config"
    )


def test_kubernetes_dry_run_uses_server_dry_run_and_live_patches_the_resource(
    session: Session, tmp_path: Path, kube: KubeEmulator, k8s: KubernetesPins
) -> None:
    svc = pin_service(tmp_path, k8s)
    params = {"bundle": BUNDLE, "revision": REV_2, "provider": "kubernetes"}
    planned = svc.plan(session, SRE, "opa.pin-bundle", params, "dev")
    assert planned.ok and planned.plan is not None
    version = _configmap(kube)["metadata"]["resourceVersion"]

    rehearsal = svc.apply(session, SRE, planned.plan.plan_id, reason="rehearse", live=False)
    assert rehearsal.ok and "dry run accepted" in rehearsal.message
    assert _resource(kube) == f"bundles/{BUNDLE}?revision={REV_1}"
    assert (
        "PATCH",
        "/api/v1/namespaces/opa-dev/configmaps/opa-config",
        {"dryRun": ["All"], "fieldManager": ["quarterdeck"]},
    ) in kube.requests

    applied = svc.apply(session, SRE, planned.plan.plan_id, reason="roll", live=True)
    assert applied.ok, applied.message
    assert _resource(kube) == f"bundles/{BUNDLE}?revision={REV_2}"
    assert _configmap(kube)["metadata"]["resourceVersion"] != version
    assert planned.plan.before["revision"] == REV_1


def test_a_configmap_changed_since_the_plan_is_refused(
    session: Session, tmp_path: Path, kube: KubeEmulator, k8s: KubernetesPins
) -> None:
    svc = pin_service(tmp_path, k8s)
    planned = svc.plan(
        session,
        SRE,
        "opa.pin-bundle",
        {"bundle": BUNDLE, "revision": REV_2, "provider": "kubernetes"},
        "dev",
    )
    assert planned.plan is not None
    kube.core_api().patch_namespaced_config_map(
        "opa-config", "opa-dev", {"metadata": {"labels": {"touched": "yes"}}}
    )

    result = svc.apply(session, SRE, planned.plan.plan_id, reason="roll", live=True)

    assert not result.ok and "changed since the plan" in result.message
    assert _resource(kube) == f"bundles/{BUNDLE}?revision={REV_1}"


def test_a_stale_resource_version_gets_the_api_servers_409(
    session: Session, kube: KubeEmulator, k8s: KubernetesPins
) -> None:
    _, state = k8s.read(session, BUNDLE, "dev")
    kube.core_api().patch_namespaced_config_map(
        "opa-config", "opa-dev", {"metadata": {"labels": {"x": "1"}}}
    )
    plan = PlanView("p1", "dev", {}, {}, {"bundle": BUNDLE, "revision": REV_2}, "sam", "roll")

    outcome = k8s.pin(session, plan, live=True, expected_state=state)

    assert (
        not outcome.ok and outcome.message == "ConfigMap changed since the plan (409): plan again"
    )
    assert _resource(kube) == f"bundles/{BUNDLE}?revision={REV_1}"


# -- verify against real OPA status reports -----------------------------------------------------

STATUS = CAPTURES / "opa-wire" / "status"
STATUS_TOKEN = "qd-test-bearer-token-not-secret"  # the captures' credentials.bearer token
ACTIVE = "2026.12.01-r1"  # what every captured report has active for bundle `acme`


def captured_status(name: str) -> tuple[list[tuple[str, str]], bytes]:
    """A status POST as OPA 1.9 sent it: its headers (minus Host/Content-Length) and raw body."""
    raw = STATUS / f"{name}.raw.json"
    if not raw.is_file():
        peer_missing(f"the OPA status captures are not at {STATUS}")
    sent = json.loads((STATUS / f"{name}.request.json").read_text())
    headers = [
        (str(k), str(v))
        for k, v in sent["headers"]
        if str(k).lower() not in ("host", "content-length")
    ]
    return headers, raw.read_bytes()


@pytest.fixture
def opa_reports(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[AppContext, Any]]:
    """The status receiver over HTTP (Flask test client) with its clock under the test's hand;
    ``post(name, at)`` sends a captured body as OPA did and returns the HTTP status."""
    ctx = AppContext(
        settings=make_settings(
            tmp_path, opa={"status_token": STATUS_TOKEN, "environment_label": "env"}
        ),
        engine=engine,
        sessions=session_factory(engine),
    )
    app = Flask("status")
    app.register_blueprint(make_blueprint(ctx))
    client = app.test_client()
    received = FakeClock(NOW)
    monkeypatch.setattr("console.http.policy.utcnow", received)

    def post(name: str, at: Any, body: bytes | None = None) -> int:
        headers, raw = captured_status(name)
        received.now = at
        response = client.post("/ingest/opa/status", data=body or raw, headers=headers)
        return response.status_code

    yield ctx, post


def verify_at(ctx: AppContext, at: Any, **config: Any) -> bool | None:
    action = PinOpaBundle(
        [RegistryPins()], lambda _: None, PinConfig(**config), clock=FakeClock(at)
    )
    plan = PlanView("p1", "stage", {}, {}, {"bundle": "acme", "revision": ACTIVE}, "sam", "roll")
    with ctx.session() as session:
        return action.verify(session, plan)


def test_a_restarted_opa_lets_the_pin_verify_and_a_gone_one_is_stale_not_drift(
    opa_reports: tuple[AppContext, Any],
) -> None:
    """Real OPA 1.9 bodies: process A answers a 409 on a bundle poll (`bundle_error`), then the
    OPA restarts (a new `labels.id`, the same `instance` label) and reports the revision clean.
    Keyed on `labels.id`, process A would drift forever; keyed on the identity label, the one
    OPA runs the revision and the pin verifies. An instance that stopped reporting a day ago,
    on the older revision, is stale: listed, never counted."""
    ctx, post = opa_reports
    _, ok = captured_status("size-buffer-bundle-ok")
    gone = json.loads(ok)  # the same OPA body from a pod since scaled away, one revision back
    gone["labels"] |= {"id": "uuid-of-a-pod-scaled-away", "instance": "opa-stage-0"}
    gone["bundles"]["acme"]["active_revision"] = "2026.11.30-r9"

    codes = [
        post("size-buffer-bundle-ok", NOW - timedelta(days=1), json.dumps(gone).encode()),
        post("size-buffer-bundle-ok", NOW),
        post("size-buffer-bundle-error-409", NOW + timedelta(seconds=10)),
    ]
    during_409 = verify_at(ctx, NOW + timedelta(seconds=20))
    codes.append(post("size-buffer-after-restart", NOW + timedelta(seconds=40)))
    after = NOW + timedelta(seconds=50)
    verified = verify_at(ctx, after)
    lenient = verify_at(ctx, after, stale_after_intervals=1000.0)  # nothing is stale
    with ctx.session() as session:
        processes = dict(
            session.execute(
                select(OpaStatusReport.process_id, OpaStatusReport.instance_id).distinct()
            ).all()
        )
        drift = pin_drift(session, "acme", "stage", ACTIVE, as_of=after)

    assert codes == [200, 200, 200, 200]
    assert processes == {
        "uuid-of-a-pod-scaled-away": "opa-stage-0",
        "d1791c84-55e1-41d8-88d0-2bad0917d1af": "opa-stage-1",  # process A
        "4acc3d4c-f4ab-46bb-ad3d-5181c9196386": "opa-stage-1",  # after the restart
    }
    assert during_409 is None  # the 409 is an error on the bundle: not verified yet
    assert verified is True
    assert lenient is None  # were opa-stage-0 counted, its old revision would block
    assert drift == PinDrift(instances=1, drifted=[], stale=["opa-stage-0"])
