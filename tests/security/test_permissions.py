"""The permission table, walked: every state-changing path (HTTP API and Dash callback) refuses
anonymous visitors (401), forged proxy headers (401) and under-privileged roles (403), and
changes nothing when it refuses; the roles the table allows get past the gate. In the demo too.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from actions.base import Actor
from console.auth.identity import ROLES, Identity
from console.auth.permissions import (
    DASH_GATES,
    HTTP_PERMISSIONS,
    PERMISSIONS,
    allowed_roles,
    authorize,
    callback_name,
)
from tests.security.conftest import (
    ORIGIN,
    PROXY_GROUPS,
    Console,
    build_console,
    callback_body,
    sign_in,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "security.md"
FORGED = "forged-header"
ANON = "anonymous"


@dataclass(frozen=True)
class Row:
    permission: str
    path: str  # "POST /api/…" or a Dash callback "module.function [trigger]"

    @property
    def is_http(self) -> bool:
        return self.path.startswith(("POST ", "PUT ", "DELETE ", "PATCH "))


ROWS = [
    Row(p.name, path)
    for p in PERMISSIONS.values()
    for path in [spec for _, spec in p.http] + list(p.dash)
]


def _send(console: Console, client: FlaskClient, row: Row, headers: dict[str, str]) -> Any:
    if row.is_http:
        method, url = row.path.split(" ", 1)
        return client.open(re.sub(r"<\w+>", "nope", url), method=method, json={}, headers=headers)
    match = re.fullmatch(r"(\S+)(?: \[(\S+)\])?", row.path)
    assert match is not None
    function, trigger = match.group(1), match.group(2)
    if trigger is None:  # the callback's first input is its button
        entry = next(
            e
            for e in console.app.callback_map.values()
            if callback_name(e.get("callback")) == function
        )
        first = entry["inputs"][0]["id"]
        trigger = first if not first.startswith("{") else first.split('"type":"')[1].split('"')[0]
    body = callback_body(console.app, function, trigger)
    return client.post("/_dash-update-component", json=body, headers=headers)


Caller = tuple[FlaskClient, dict[str, str]]


def _local_callers(console: Console) -> dict[str, Caller]:
    callers: dict[str, Caller] = {ANON: (console.client(), dict(ORIGIN))}
    for role in ROLES:
        client = console.client()
        assert sign_in(client, f"{role}-user").status_code == 302
        callers[role] = (client, dict(ORIGIN))
    # Local mode never reads proxy headers: claiming to be an admin through them is nobody.
    callers[FORGED] = (
        console.client(),
        {**ORIGIN, "X-Forwarded-User": "admin-user", "X-Forwarded-Groups": PROXY_GROUPS["admin"]},
    )
    return callers


def _header_callers(console: Console) -> dict[str, Caller]:
    callers: dict[str, Caller] = {ANON: (console.client(), dict(ORIGIN))}
    for role in ROLES:
        callers[role] = (
            console.client(),
            {
                **ORIGIN,
                "X-Forwarded-User": f"{role}@example.com",
                "X-Forwarded-Groups": PROXY_GROUPS[role],
            },
        )
    forged = console.client()
    forged.environ_base["REMOTE_ADDR"] = "10.9.9.9"  # not the trusted proxy
    callers[FORGED] = (
        forged,
        {
            **ORIGIN,
            "X-Forwarded-User": "admin@example.com",
            "X-Forwarded-Groups": PROXY_GROUPS["admin"],
        },
    )
    return callers


CONFIGS: dict[str, tuple[dict[str, Any], Callable[[Console], dict[str, Caller]]]] = {
    "demo, anonymous reading on (make run)": (
        {"demo_mode": True, "auth": {"allow_anonymous_read": True}},
        _local_callers,
    ),
    "production local sign-in": (
        {
            "demo_mode": False,
            "secret_key": "a-real-secret-for-the-security-suite-0123",
            "auth": {"allow_anonymous_read": False},
        },
        _local_callers,
    ),
    "demo behind an auth proxy (header mode)": (
        {"demo_mode": True, "auth": {"mode": "header", "allow_anonymous_read": True}},
        _header_callers,
    ),
}


@pytest.fixture(params=list(CONFIGS), scope="module")
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Console, dict[str, Caller]]]:
    overrides, callers = CONFIGS[request.param]
    console = build_console(tmp_path_factory.mktemp("perm"), **overrides)
    yield console, callers(console)
    console.ctx.engine.dispose()


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r.permission}:{r.path}")
def test_every_row_refuses_whoever_lacks_its_role_and_lets_its_roles_through(
    served: tuple[Console, dict[str, Caller]], row: Row
) -> None:
    console, callers = served
    allowed = allowed_roles(row.permission)
    outcomes: dict[str, int] = {}
    for who, (client, headers) in callers.items():
        before = console.state()
        response = _send(console, client, row, headers)
        outcomes[who] = response.status_code
        if who in allowed:
            assert response.status_code not in (401, 403), (who, response.get_data(as_text=True))
            continue
        expected = 403 if who in ROLES else 401
        assert response.status_code == expected, (who, response.get_data(as_text=True))
        assert (
            response.json.get("permission", row.permission) == row.permission
        )  # or "sign in first"
        assert console.state() == before, f"{who} changed state through {row.path}"
    assert set(outcomes) == {ANON, FORGED, *ROLES}


def test_the_table_covers_every_gated_callback_and_endpoint_the_app_serves(
    console: Console,
) -> None:
    served_callbacks = {callback_name(e.get("callback")) for e in console.app.callback_map.values()}
    endpoints = {rule.endpoint for rule in console.app.server.url_map.iter_rules()}

    assert {g.callback for g in DASH_GATES} <= served_callbacks
    assert set(HTTP_PERMISSIONS) <= endpoints
    for gate in DASH_GATES:
        assert gate.every_permission() <= set(PERMISSIONS) or gate.every_permission() == set()


def test_docs_list_every_permission_with_its_roles_and_paths() -> None:
    text = DOCS.read_text()

    for permission in PERMISSIONS.values():
        line = next(
            (ln for ln in text.splitlines() if ln.startswith(f"| `{permission.name}`")), None
        )
        assert line is not None, f"docs/security.md has no row for {permission.name}"
        for role in permission.roles:
            assert f"`{role}`" in line, (permission.name, role)
        for _, path in permission.http:
            assert f"`{path}`" in line, (permission.name, path)
        for callback in permission.dash:
            assert f"`{callback.split(' ')[0]}`" in line, (permission.name, callback)


@pytest.mark.parametrize(
    "roles", [frozenset(c) for n in range(3) for c in itertools.combinations(ROLES, n)]
)
def test_the_action_rows_agree_with_the_action_service_checks(roles: frozenset[str]) -> None:
    identity = Identity("someone", roles, "local")
    actor = Actor("someone", roles)

    assert (authorize(identity, "action.plan") is None) == actor.may_plan
    assert (authorize(identity, "action.apply") is None) == actor.may_plan
    assert (authorize(identity, "action.verify") is None) == actor.may_plan
    assert (authorize(identity, "action.approve") is None) == actor.may_approve
    assert authorize(None, "action.plan") is not None


def test_a_callback_body_without_a_trigger_needs_every_permission_of_the_callback(
    console: Console,
) -> None:
    sre = console.client()
    sign_in(sre, "sre-user")
    body = callback_body(console.app, "console.pages.actions.act", None, {"actions-plan-id": "p1"})

    answer = sre.post("/_dash-update-component", json=body, headers=ORIGIN)

    assert body["changedPropIds"] == []
    assert answer.status_code == 403 and answer.json["permission"] == "action.approve"


def test_a_refused_signed_in_caller_is_audited_and_anonymous_is_not(console: Console) -> None:
    viewer = console.client()
    sign_in(viewer, "viewer-user")
    body = callback_body(
        console.app,
        "console.pages.actions.act",
        "actions-apply-btn",
        {"actions-plan-id": "p1", "actions-reason": "forged", "actions-live": ["live"]},
    )

    refused = viewer.post("/_dash-update-component", json=body, headers=ORIGIN)
    row = console.last_audit()
    anonymous = console.client().post("/_dash-update-component", json=body, headers=ORIGIN)

    assert refused.status_code == 403
    assert row is not None and (row.actor, row.action, row.outcome) == (
        "viewer-user",
        "action.apply",
        "refused",
    )
    assert anonymous.status_code == 401
    last = console.last_audit()
    assert last is not None and last.seq == row.seq


def test_a_demo_visitor_cannot_start_a_drill_or_build_a_pack(console: Console) -> None:
    anonymous = console.client()
    drill = callback_body(
        console.app, "console.pages.failover.drill_action", "failover-drill-start"
    )
    build = callback_body(console.app, "console.pages.evidence.build", "evidence-build")

    answers = [
        anonymous.post("/_dash-update-component", json=drill, headers=ORIGIN),
        anonymous.post("/_dash-update-component", json=build, headers=ORIGIN),
        anonymous.post("/api/evidence/packs/ev-any/link", headers=ORIGIN),
    ]

    assert [a.status_code for a in answers] == [401, 401, 401]
    assert console.state() == dict.fromkeys(console.state(), 0)


def test_a_re_rendered_link_list_is_not_a_click_and_reads_for_a_viewer(console: Console) -> None:
    viewer = console.client()
    sign_in(viewer, "viewer-user")
    body = callback_body(
        console.app,
        "console.pages.evidence.issue_link",
        "evidence-get-link",
        {"evidence-get-link": 0},
    )

    answer = viewer.post("/_dash-update-component", json=body, headers=ORIGIN)

    assert answer.status_code in (200, 204)
    assert "token=" not in answer.get_data(as_text=True)


def test_an_auditor_gets_a_link_naming_them_and_never_anonymous(console: Console) -> None:
    auditor = console.client()
    sign_in(auditor, "Auditor-User ")  # another spelling of the same account
    body = callback_body(
        console.app,
        "console.pages.evidence.issue_link",
        "evidence-get-link",
        {"evidence-get-link": 1},
    )

    answer = auditor.post("/_dash-update-component", json=body, headers=ORIGIN)

    assert answer.status_code == 200 and "token=" in answer.get_data(as_text=True)
