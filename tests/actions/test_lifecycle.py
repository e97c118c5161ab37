"""The lifecycle's guards on SQLite and PostgreSQL: roles, two-person rule, approval expiry,
break-glass, the in-flight lock and the audit of every refusal (registry pins as the action)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from actions.base import ActionPolicy, Actor
from actions.bundle_pin import PinConfig, PinOpaBundle, RegistryPins
from actions.registry import ActionService
from store.audit import verify_chain
from store.db import session_factory, session_scope
from store.models import ActionAudit, BundlePin, BundleRevision
from store.models.actions import ActionApproval, ActionLock
from tests.conftest import FIXED_NOW, FakeClock
from tests.peers_actions import BUNDLE, REV_1, REV_2, register_revisions, report_status

VIEWER = Actor("vic", frozenset({"viewer"}))
SRE = Actor("sam", frozenset({"sre"}))
SRE_2 = Actor("sid", frozenset({"sre"}))
CAPTAIN = Actor("cara", frozenset({"captain"}))
ADMIN = Actor("ada", frozenset({"admin"}))
# Every time here comes from one fixed instant; the service reads the same instant, so no
# expiry depends on how fast the suite runs or on the machine's clock.
NOW = FIXED_NOW
PARAMS = {"bundle": BUNDLE, "revision": REV_2}
BACK = {"bundle": BUNDLE, "revision": REV_1}  # the next change on the same target


@pytest.fixture
def session(engine: Engine, tmp_path: Path) -> Iterator[Session]:
    with session_scope(session_factory(engine)) as s:
        register_revisions(s, tmp_path, added_at=NOW - timedelta(days=10))
        # Active on stage for three days (the soak) and still reporting (live, not stale).
        report_status(s, "stage", ["stage-opa-1"], REV_2, at=NOW - timedelta(days=3))
        report_status(s, "stage", ["stage-opa-1"], REV_2, at=NOW - timedelta(minutes=1))
        yield s


@pytest.fixture
def svc() -> ActionService:
    def load(revision: BundleRevision) -> bytes | None:
        return Path(revision.source).read_bytes()

    clock = FakeClock(NOW)
    return ActionService(
        [PinOpaBundle([RegistryPins(clock=clock)], load, PinConfig(), clock=clock)],
        ActionPolicy(live_environments=frozenset({"stage", "prod"}), approval_ttl_s=600),
        clock=clock,
    )


def outcomes(session: Session) -> list[str]:
    return list(session.scalars(select(ActionAudit.outcome).order_by(ActionAudit.seq)))


def pinned(session: Session) -> list[str]:
    return list(session.scalars(select(BundlePin.revision).where(BundlePin.environment == "prod")))


def test_a_viewer_cannot_plan_and_an_sre_cannot_approve(
    session: Session, svc: ActionService
) -> None:
    denied = svc.plan(session, VIEWER, "opa.pin-bundle", PARAMS, "prod")
    planned = svc.plan(session, SRE, "opa.pin-bundle", PARAMS, "prod")
    assert planned.plan is not None
    not_captain = svc.approve(session, SRE_2, planned.plan.plan_id)
    viewer_apply = svc.apply(session, VIEWER, planned.plan.plan_id, reason="x", live=True)

    assert not denied.ok and "vic may not plan" in denied.message
    assert not not_captain.ok and "needs role captain" in not_captain.message
    assert not viewer_apply.ok
    assert outcomes(session) == ["refused", "planned", "refused", "refused"]
    assert pinned(session) == []


def test_production_needs_another_persons_unexpired_approval(
    session: Session, svc: ActionService
) -> None:
    planned = svc.plan(session, CAPTAIN, "opa.pin-bundle", PARAMS, "prod")
    assert planned.plan is not None
    plan_id = planned.plan.plan_id

    own = svc.approve(session, CAPTAIN, plan_id)
    unapproved = svc.apply(session, CAPTAIN, plan_id, reason="ship", live=True)
    approved = svc.approve(session, ADMIN, plan_id)
    session.execute(update(ActionApproval).values(expires_at=NOW - timedelta(seconds=1)))
    expired = svc.apply(session, CAPTAIN, plan_id, reason="ship", live=True)
    svc.approve(session, ADMIN, plan_id)
    applied = svc.apply(session, CAPTAIN, plan_id, reason="ship", live=True)

    assert not own.ok and "requester cannot approve their own change" in own.message
    assert not unapproved.ok and unapproved.blocked_by == ["two-person-approval"]
    assert approved.ok
    assert not expired.ok and expired.blocked_by == ["two-person-approval"]
    assert "ada's approval expired" in expired.message
    assert applied.ok, applied.message
    assert pinned(session) == [REV_2]
    assert outcomes(session) == [
        "planned",
        "refused",
        "refused",
        "approved",
        "refused",
        "approved",
        "applied",
    ]
    assert verify_chain(session).ok


def test_break_glass_is_admin_only_names_the_rules_needs_a_reason_and_is_audited(
    session: Session, svc: ActionService
) -> None:
    planned = svc.plan(session, SRE, "opa.pin-bundle", PARAMS, "prod")
    assert planned.plan is not None
    plan_id = planned.plan.plan_id

    by_sre = svc.apply(
        session, SRE, plan_id, reason="now", live=True, override=["two-person-approval"]
    )
    no_reason = svc.apply(
        session, ADMIN, plan_id, reason=" ", live=True, override=["two-person-approval"]
    )
    unnamed = svc.apply(session, ADMIN, plan_id, reason="now", live=True)
    wrong = svc.apply(
        session,
        ADMIN,
        plan_id,
        reason="now",
        live=True,
        override=["two-person-approval", "max-step-change"],
    )
    forced = svc.apply(
        session,
        ADMIN,
        plan_id,
        reason="incident 42: authz outage",
        live=True,
        override=["two-person-approval"],
    )

    assert not by_sre.ok and "needs the admin role" in by_sre.message
    assert not no_reason.ok and no_reason.message == "a reason is required"
    assert not unnamed.ok and unnamed.blocked_by == ["two-person-approval"]
    assert not wrong.ok and "did not fail: max-step-change" in wrong.message
    assert forced.ok
    override = session.scalar(select(ActionAudit).where(ActionAudit.outcome == "override"))
    assert override is not None and override.actor == "ada"
    assert override.detail["bypassed"] == ["two-person-approval"]
    assert override.detail["reason"] == "incident 42: authz outage"


def test_one_change_per_target_is_in_flight(session: Session, svc: ActionService) -> None:
    first = svc.plan(session, SRE, "opa.pin-bundle", PARAMS, "stage")
    assert first.plan is not None
    session.add(
        ActionLock(
            target=first.plan.target,
            plan_id="other",
            holder="sid",
            acquired_at=NOW,
            expires_at=NOW + timedelta(minutes=5),
        )
    )
    session.flush()

    second = svc.plan(session, SRE, "opa.pin-bundle", PARAMS, "stage")
    blocked = svc.apply(session, SRE, first.plan.plan_id, reason="go", live=True)
    session.execute(update(ActionLock).values(expires_at=NOW - timedelta(seconds=1)))
    after_expiry = svc.apply(session, SRE, first.plan.plan_id, reason="go", live=True)

    assert second.blocked_by == ["no-change-in-flight"]
    assert not blocked.ok and "in flight" in blocked.message
    assert after_expiry.ok, after_expiry.message


def test_a_plan_applied_once_cannot_be_applied_again(session: Session, svc: ActionService) -> None:
    planned = svc.plan(session, SRE, "opa.pin-bundle", PARAMS, "stage")
    assert planned.plan is not None
    svc.apply(session, SRE, planned.plan.plan_id, reason="go", live=True)

    again = svc.apply(session, SRE, planned.plan.plan_id, reason="go", live=True)

    assert not again.ok and "plan again" in again.message
    assert planned.plan.status == "verified"  # stage OPA already reported the revision
    assert session.scalar(select(ActionLock)) is None


def test_a_rehearsal_leaves_the_plan_open_for_approval_and_the_inbox_shows_it(
    session: Session, svc: ActionService
) -> None:
    planned = svc.plan(session, SRE, "opa.pin-bundle", PARAMS, "prod")
    assert planned.plan is not None
    plan_id = planned.plan.plan_id
    assert [e["plan_id"] for e in svc.inbox(session, CAPTAIN)] == [plan_id]
    assert svc.inbox(session, SRE) == []  # an sre may not approve: no inbox

    rehearsal = svc.apply(session, SRE, plan_id, reason="rehearse", live=False)
    steps = svc.next_steps(session, planned.plan, SRE)
    approved = svc.approve(session, CAPTAIN, plan_id)

    assert rehearsal.ok and planned.plan.status == "approved", rehearsal.message
    assert "waiting for a captain other than sam" in steps["next"]
    assert steps["may"] == {
        "approve": False,
        "apply": True,
        "verify": False,
        "rollback": False,
        "override": False,
    }
    assert approved.ok, approved.message
    assert svc.inbox(session, CAPTAIN) == []


def _applied_unobserved_prod_pin(session: Session, svc: ActionService) -> str:
    """A prod pin r1 → r2 applied live that no prod OPA has reported yet: it holds the lock."""
    session.add(
        BundlePin(
            bundle=BUNDLE,
            environment="prod",
            revision=REV_1,
            pinned_at=NOW - timedelta(days=20),
            pinned_by="ada",
            reason="first pin",
        )
    )
    session.flush()
    planned = svc.plan(session, SRE, "opa.pin-bundle", PARAMS, "prod")
    assert planned.plan is not None
    assert svc.approve(session, CAPTAIN, planned.plan.plan_id).ok
    applied = svc.apply(session, SRE, planned.plan.plan_id, reason="ship", live=True)
    assert applied.ok and planned.plan.status == "applied", applied.message
    return planned.plan.plan_id


def test_verify_releases_the_lock_and_the_next_pin_is_not_blocked(
    session: Session, svc: ActionService
) -> None:
    plan_id = _applied_unobserved_prod_pin(session, svc)
    held = svc.plan(session, SRE, "opa.pin-bundle", BACK, "prod")
    report_status(session, "prod", ["prod-opa-1"], REV_2, at=NOW)
    verified = svc.verify(session, SRE, plan_id)
    after = svc.plan(session, SRE, "opa.pin-bundle", BACK, "prod")

    assert "no-change-in-flight" in held.blocked_by
    assert verified.ok and verified.plan is not None and verified.plan.status == "verified"
    assert session.scalar(select(ActionLock)) is None
    assert "no-change-in-flight" not in after.blocked_by


def test_an_unobserved_change_ends_unverified_at_its_deadline_and_its_lock_stops_blocking(
    session: Session, svc: ActionService
) -> None:
    plan_id = _applied_unobserved_prod_pin(session, svc)
    clock = svc.clock
    assert isinstance(clock, FakeClock)
    clock.now = NOW + timedelta(seconds=svc.policy.verify_timeout_s + 1)  # lock TTL not reached
    assert svc.policy.verify_timeout_s + 1 < svc.policy.lock_ttl_s

    nobody_verified = svc.plan(session, SRE, "opa.pin-bundle", BACK, "prod")

    first = svc.get(session, plan_id)
    assert first is not None and first.status == "unverified"
    assert "no-change-in-flight" not in nobody_verified.blocked_by
    assert session.scalar(select(ActionLock)) is None
    concluded = session.scalar(select(ActionAudit).where(ActionAudit.outcome == "unverified"))
    assert concluded is not None and concluded.actor == "quarterdeck"
    assert verify_chain(session).ok


def test_a_lock_whose_change_ended_never_blocks(session: Session, svc: ActionService) -> None:
    plan_id = _applied_unobserved_prod_pin(session, svc)
    first = svc.get(session, plan_id)
    assert first is not None
    first.status = "failed"  # ended, but (say) a crash left its lock row behind
    session.flush()

    later = svc.plan(session, SRE, "opa.pin-bundle", BACK, "prod")

    assert session.scalar(select(ActionLock)) is not None
    assert "no-change-in-flight" not in later.blocked_by


def test_a_rollback_is_not_blocked_by_the_lock_of_the_change_it_undoes(
    session: Session, svc: ActionService
) -> None:
    plan_id = _applied_unobserved_prod_pin(session, svc)

    rollback = svc.rollback(session, SRE, plan_id, reason="undo")

    assert rollback.plan is not None, rollback.message
    assert "no-change-in-flight" not in rollback.blocked_by
    assert svc.approve(session, CAPTAIN, rollback.plan.plan_id).ok
    clock = svc.clock
    assert isinstance(clock, FakeClock)
    clock.now = NOW + timedelta(minutes=1)  # still inside the first change's verify deadline
    failed = [r["name"] for r in rollback.plan.rules if not r["passed"]]
    applied = svc.apply(
        session,
        ADMIN if failed else SRE,
        rollback.plan.plan_id,
        reason="undo",
        live=True,
        override=failed or None,
    )
    assert applied.ok, applied.message
    lock = session.scalar(select(ActionLock))
    assert lock is not None and lock.plan_id == rollback.plan.plan_id  # taken over
