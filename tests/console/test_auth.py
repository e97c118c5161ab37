"""Sign-in, sessions, proxy headers and the Origin check over HTTP (Flask test client)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from console.app import create_app
from console.auth.users import add_user
from console.context import AppContext
from console.http.auth import COOKIE
from store.migrate import upgrade
from store.models import ActionAudit
from store.models.actions import ActionPlan
from store.passwords import check_password, hash_password
from tests.conftest import make_settings
from tests.security.conftest import callback_body

ORIGIN = {"Origin": "http://localhost"}
PASSWORD = "correct horse battery"


def _ctx(tmp_path: Path, **auth: Any) -> AppContext:
    context = AppContext.from_settings(
        make_settings(tmp_path, auth={"allow_anonymous_read": False, **auth})
    )
    upgrade(context.engine)
    with context.session() as session:
        for name, role in (("vera", "viewer"), ("sam", "sre"), ("cara", "captain")):
            add_user(session, name, PASSWORD, [role])
    return context


@pytest.fixture
def local(tmp_path: Path) -> Iterator[tuple[AppContext, Any]]:
    context = _ctx(tmp_path)
    yield context, create_app(context).server.test_client()
    context.engine.dispose()


def sign_in(client: Any, user: str, password: str = PASSWORD) -> Any:
    return client.post(
        "/sign-in",
        data={"username": user, "password": password, "next": "/actions"},
        headers=ORIGIN,
    )


def test_passwords_are_salted_scrypt_hashes() -> None:
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)

    assert first != second and first.startswith("scrypt$16384$8$1$")
    assert check_password(PASSWORD, first) and not check_password("wrong", first)


def test_signed_out_visitors_are_sent_to_sign_in_and_apis_answer_401(local: Any) -> None:
    _, client = local

    page = client.get("/overview-or-anything")
    layout = client.get("/_dash-layout")
    health = client.get("/healthz")

    assert page.status_code == 302 and page.location.startswith("/sign-in?next=")
    assert layout.status_code == 401
    assert health.status_code == 200


def test_sign_in_sets_a_httponly_session_cookie_and_a_wrong_password_does_not(local: Any) -> None:
    _, client = local

    wrong = sign_in(client, "sam", "not the password")
    unknown = sign_in(client, "nobody")
    right = sign_in(client, "sam")

    assert wrong.status_code == 401 and unknown.status_code == 401
    assert right.status_code == 302 and right.location == "/actions"
    cookie = right.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert client.get("/_dash-layout").status_code == 200


def test_https_requests_get_a_secure_cookie(local: Any) -> None:
    _, client = local

    response = client.post(
        "/sign-in",
        data={"username": "sam", "password": PASSWORD},
        headers={"Origin": "https://localhost"},
        base_url="https://localhost",
    )

    assert "Secure" in response.headers["Set-Cookie"]


def test_cross_origin_and_origin_less_posts_are_refused(local: Any) -> None:
    _, client = local
    sign_in(client, "sam")

    evil = client.post(
        "/_dash-update-component", json={}, headers={"Origin": "https://evil.example"}
    )
    bare = client.post("/sign-out")
    referer = client.post("/sign-out", headers={"Referer": "http://localhost/actions"})

    assert evil.status_code == 403 and evil.json == {"error": "cross-origin request refused"}
    assert bare.status_code == 403
    assert referer.status_code == 302


def test_sign_out_ends_the_session_server_side(local: Any) -> None:
    _, client = local
    token = sign_in(client, "sam").headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    client.post("/sign-out", headers=ORIGIN)

    client.set_cookie(COOKIE, token)

    assert client.get("/_dash-layout").status_code == 401


def test_a_viewer_forging_the_action_callback_is_refused_server_side(local: Any) -> None:
    context, _ = local
    app = create_app(context)  # its callback_map names the callbacks the browser would call
    app.server.test_client().get("/healthz")
    client = app.server.test_client()
    sign_in(client, "sam")
    plan_body = callback_body(
        app,
        "console.pages.actions.make_plan",
        "actions-plan-btn",
        {
            "actions-kind": "opa.pin-bundle",
            "actions-env": "dev",
            "actions-bundle": "authz",
            "actions-revision": "r1",
            "actions-provider": "registry",
        },
    )
    planned = client.post("/_dash-update-component", json=plan_body, headers=ORIGIN)
    plan_id = planned.json["response"]["actions-plan-id"]["data"]
    client.post("/sign-out", headers=ORIGIN)
    sign_in(client, "vera")

    forged = callback_body(
        app,
        "console.pages.actions.act",
        "actions-apply-btn",
        {
            "actions-plan-id": plan_id,
            "actions-reason": "forged",
            "actions-live": ["live"],
            "actions-override": ["revision-exists"],
        },
    )
    response = client.post("/_dash-update-component", json=forged, headers=ORIGIN)

    assert response.status_code == 403
    assert response.json["permission"] == "action.apply"
    assert "vera may not apply or rehearse a plan" in response.json["error"]
    with context.session() as session:
        last = session.scalars(select(ActionAudit).order_by(ActionAudit.seq.desc())).first()
    assert last is not None and (last.actor, last.outcome) == ("vera", "refused")
    with context.session() as session:
        plan = session.scalars(select(ActionPlan).where(ActionPlan.plan_id == plan_id)).one()
    assert plan.status in ("planned", "blocked") and not plan.live


def test_header_mode_trusts_the_proxy_only_from_its_address(tmp_path: Path) -> None:
    context = _ctx(tmp_path, mode="header", trusted_proxies=["127.0.0.1/32"])
    client = create_app(context).server.test_client()
    headers = {
        "X-Forwarded-User": "cara@example.com",
        "X-Forwarded-Groups": "staff,quarterdeck-captains",
    }

    trusted = client.get("/api/actions/plans", headers=headers)
    spoofed = client.get(
        "/api/actions/plans", headers=headers, environ_base={"REMOTE_ADDR": "10.1.2.3"}
    )

    assert trusted.status_code == 200
    assert spoofed.status_code == 401
    context.engine.dispose()


def test_a_requester_cannot_approve_their_own_production_change_over_http(local: Any) -> None:
    _, client = local
    sign_in(client, "cara")
    planned = client.post(
        "/api/actions/plan",
        json={
            "action": "opa.pin-bundle",
            "params": {"bundle": "authz", "revision": "r1"},
            "environment": "prod",
        },
        headers=ORIGIN,
    )
    plan_id = planned.json["plan"]["plan_id"]

    own = client.post(f"/api/actions/{plan_id}/approve", headers=ORIGIN)

    assert own.status_code == 403
    assert own.json["message"] == "two-person rule: the requester cannot approve their own change"
