"""One identity per person: the canonical user key (trimmed, case-folded) is the requester, the
approver, the audit actor and the session's user, from the auth proxy's header and the sign-in
form alike; the two-person rule compares those keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from actions.base import Actor
from console.auth.users import AuthError, add_user
from console.context import AppContext
from console.wiring import build_service
from store.models import ActionAudit
from store.models.actions import ActionPlan
from tests.security.conftest import ORIGIN, PROXY_GROUPS, build_console, sign_in

PIN = {
    "action": "opa.pin-bundle",
    "params": {"bundle": "authz", "revision": "r1"},
    "environment": "prod",
}


def _proxy(user: str, role: str = "captain") -> dict[str, str]:
    return {**ORIGIN, "X-Forwarded-User": user, "X-Forwarded-Groups": PROXY_GROUPS[role]}


def test_header_mode_a_case_variant_of_the_requester_cannot_approve(tmp_path: Path) -> None:
    console = build_console(
        tmp_path, users=False, auth={"mode": "header", "allow_anonymous_read": False}
    )
    client = console.client()

    planned = client.post("/api/actions/plan", json=PIN, headers=_proxy("cara@example.com"))
    plan_id = planned.json["plan"]["plan_id"]
    variant = client.post(f"/api/actions/{plan_id}/approve", headers=_proxy("  Cara@Example.COM "))
    other = client.post(f"/api/actions/{plan_id}/approve", headers=_proxy("dan@example.com"))

    assert planned.json["plan"]["requested_by"] == "cara@example.com"
    assert variant.status_code == 403
    assert (
        variant.json["message"] == "two-person rule: the requester cannot approve their own change"
    )
    assert other.status_code == 200
    with console.ctx.session() as session:
        actors = session.scalars(select(ActionAudit.actor).order_by(ActionAudit.seq)).all()
    assert list(actors) == ["cara@example.com", "cara@example.com", "dan@example.com"]
    console.ctx.engine.dispose()


def test_the_service_compares_canonical_keys_whatever_spelling_it_is_handed(
    ctx: AppContext,
) -> None:
    service = build_service(ctx.settings)
    with ctx.session() as session:
        planned = service.plan(
            session,
            Actor("Cara@Example.com", frozenset({"captain"})),
            "opa.pin-bundle",
            {"bundle": "authz", "revision": "r1"},
            "prod",
        )
        assert planned.plan is not None
        refused = service.approve(
            session, Actor(" cara@example.COM", frozenset({"captain"})), planned.plan.plan_id
        )
        plan = session.scalar(select(ActionPlan).where(ActionPlan.plan_id == planned.plan.plan_id))
        assert plan is not None
        approvers = service.valid_approvals(session, plan, at=service.clock())

    assert not refused.ok and "two-person" in refused.message
    assert approvers == []


def test_local_accounts_are_one_per_key_and_any_spelling_signs_in(tmp_path: Path) -> None:
    console = build_console(tmp_path, users=False, auth={"allow_anonymous_read": False})
    with console.ctx.session() as session:
        add_user(session, "  Ada ", "correct horse battery", ["sre"])
    with console.ctx.session() as session, pytest.raises(AuthError, match="already exists"):
        add_user(session, "ADA", "another long password", ["admin"])
    client = console.client()

    signed = sign_in(client, "aDa", "correct horse battery")
    layout = client.get("/_dash-layout")

    assert signed.status_code == 302 and layout.status_code == 200
    with console.ctx.session() as session:
        sign_ins = session.scalars(select(ActionAudit).where(ActionAudit.action == "sign-in")).all()
    assert [(a.actor, a.outcome) for a in sign_ins] == [("ada", "signed-in")]
    console.ctx.engine.dispose()
