"""PinOpaBundle: impact preview with two known Rego revisions, signature and soak rules, and the
Kubernetes provider against an API emulator that honours resourceVersion (409) and dryRun."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.orm import Session

from actions.base import ActionPolicy, Actor, PlanView
from actions.bundle_pin import (
    KubernetesPins,
    PinConfig,
    PinOpaBundle,
    RegistryPins,
    bundle_files,
    replay_decisions,
)
from actions.registry import ActionService
from console.context import AppContext
from store.models import BundleRevision, OpaDecision
from tests.conftest import FIXED_NOW, FakeClock
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
