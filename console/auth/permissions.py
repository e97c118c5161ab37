"""The permission table: every state-changing path and the role it needs, and the one check.

`authorize(identity, permission)` is the only role check of the console. The auth layer
(`console.http.auth`) runs it before any handler for every HTTP endpoint and every Dash callback
named here, so a forged request meets it whatever the page showed; the callbacks and the action
service check again (defence in depth, and a readable message). Anonymous visitors never pass,
in any mode, the demo included. `docs/security.md` is this table in prose; a test keeps the two
in step and walks every row for anonymous, each role and a forged header.

Roles: `viewer` reads; `sre` runs drills, records incidents, writes postmortems and plans or
applies guarded changes; `captain` plans, applies and approves; `auditor` (a manager) builds
evidence packs and fetches their download links; `admin` holds every role and break-glass.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from console.auth.identity import Identity

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Permission:
    """One thing that changes state, the roles allowed to do it (admin always is), its paths."""

    name: str
    roles: frozenset[str]
    summary: str
    http: tuple[tuple[str, str], ...] = ()  # (Flask endpoint, "METHOD /path")
    dash: tuple[str, ...] = ()  # Dash callbacks `module.function [trigger]` (see DASH_GATES)
    cli: tuple[str, ...] = ()


_PLANNERS = frozenset({"sre", "captain"})

PERMISSIONS: dict[str, Permission] = {
    p.name: p
    for p in (
        Permission(
            "action.plan",
            _PLANNERS,
            "plan a guarded change (DNS weight flip, OPA bundle pin)",
            http=(("quarterdeck_actions.plan", "POST /api/actions/plan"),),
            dash=("console.pages.actions.make_plan",),
            cli=("quarterdeck actions plan --as USER",),
        ),
        Permission(
            "action.approve",
            frozenset({"captain"}),
            "approve someone else's plan (two-person rule: never one's own)",
            http=(("quarterdeck_actions.approve", "POST /api/actions/<id>/approve"),),
            dash=("console.pages.actions.act [actions-approve-btn]",),
            cli=("quarterdeck actions approve --as USER",),
        ),
        Permission(
            "action.apply",
            _PLANNERS,
            "apply or rehearse a plan (break-glass overrides need admin besides)",
            http=(("quarterdeck_actions.apply", "POST /api/actions/<id>/apply"),),
            dash=("console.pages.actions.act [actions-apply-btn]",),
            cli=("quarterdeck actions apply --as USER",),
        ),
        Permission(
            "action.verify",
            _PLANNERS,
            "verify an applied plan (the role of apply)",
            http=(("quarterdeck_actions.verify", "POST /api/actions/<id>/verify"),),
            dash=("console.pages.actions.act [actions-verify-btn]",),
            cli=("quarterdeck actions verify --as USER",),
        ),
        Permission(
            "action.rollback",
            _PLANNERS,
            "plan the rollback of an applied change (the role of plan)",
            http=(("quarterdeck_actions.rollback", "POST /api/actions/<id>/rollback"),),
            dash=("console.pages.actions.act [actions-rollback-btn]",),
            cli=("quarterdeck actions rollback --as USER",),
        ),
        Permission(
            "demo.health",
            _PLANNERS,
            "demo mode only: make a demo region unhealthy or healthy (inverts its health check)",
            dash=("console.pages.actions.demo_health",),
        ),
        Permission(
            "drill.run",
            frozenset({"sre"}),
            "start, mark or end a failover drill (feeds the RTO goal)",
            dash=("console.pages.failover.drill_action",),
        ),
        Permission(
            "runbook.start",
            _PLANNERS,
            "start a runbook run (practice rehearses; recovery is a guarded action, approved "
            "by a second person in production)",
            dash=("console.pages.runbooks.start_run",),
            cli=("quarterdeck runbooks start --as USER",),
        ),
        Permission(
            "runbook.control",
            _PLANNERS,
            "pause, resume or abort a runbook run (a break-glass override needs admin besides)",
            dash=(
                "console.pages.runbooks.control [runbooks-pause-btn]",
                "console.pages.runbooks.control [runbooks-resume-btn]",
                "console.pages.runbooks.control [runbooks-abort-btn]",
                "console.pages.runbooks.control [runbooks-override-btn]",
            ),
            cli=("quarterdeck runbooks pause|resume|abort|override|rollback --as USER",),
        ),
        Permission(
            "runbook.approve",
            frozenset({"captain"}),
            "approve someone else's runbook run or its approval step (two-person rule)",
            dash=("console.pages.runbooks.control [runbooks-approve-btn]",),
            cli=("quarterdeck runbooks approve --as USER",),
        ),
        Permission(
            "evidence.build",
            frozenset({"auditor", "captain"}),
            "build and record a signed evidence pack",
            dash=("console.pages.evidence.build",),
        ),
        Permission(
            "evidence.link",
            frozenset({"auditor", "captain"}),
            "mint a signed download link (the token names the user; downloads need it)",
            http=(("egress.link", "POST /api/evidence/packs/<id>/link"),),
            dash=("console.pages.evidence.issue_link",),
        ),
        Permission(
            "incident.record",
            frozenset({"sre"}),
            "enter an incident by hand",
            dash=("console.pages.reliability.add_incident",),
        ),
        Permission(
            "postmortem.generate",
            frozenset({"sre"}),
            "generate (and optionally file) a postmortem",
            dash=("console.pages.reliability.generate",),
        ),
    )
}

HTTP_PERMISSIONS: dict[str, str] = {
    endpoint: p.name for p in PERMISSIONS.values() for endpoint, _ in p.http
}


@dataclass(frozen=True)
class DashGate:
    """A state-changing Dash callback, known by its function (`module.name`) and its outputs.

    ``permission`` is what every call needs; or ``triggers`` maps an input (`id.prop`, or
    `{type}.prop` for a pattern-matching id) to the permission it needs (None: that input only
    reads), and a call whose trigger is unknown or missing needs every permission of the gate
    (the callback might take any branch). ``only_clicks``: the callback acts only when one of
    its `n_clicks` inputs is set, so a re-render firing it with no clicks only reads.
    """

    callback: str
    outputs: frozenset[str]
    permission: str | None = None
    triggers: Mapping[str, str | None] = field(default_factory=dict)
    only_clicks: bool = False

    def every_permission(self) -> set[str]:
        named = {self.permission} if self.permission is not None else set()
        return named | {p for p in self.triggers.values() if p is not None}

    def needs(self, changed: list[str], clicks: list[Any]) -> set[str]:
        """What a call with these changed inputs and click counts needs."""
        if self.only_clicks and not any(clicks):
            return set()
        if self.permission is not None:
            return {self.permission}
        keys = [trigger_key(c) for c in changed]
        if not keys or any(k not in self.triggers for k in keys):
            return self.every_permission()
        return {p for k in keys if (p := self.triggers[k]) is not None}


DASH_GATES: tuple[DashGate, ...] = (
    DashGate(
        "console.pages.actions.make_plan",
        frozenset({"actions-plan-id.data", "actions-form-message.children"}),
        "action.plan",
    ),
    DashGate(
        "console.pages.actions.act",
        frozenset({"actions-plan-id.data", "actions-message.children"}),
        triggers={
            "actions-approve-btn.n_clicks": "action.approve",
            "actions-apply-btn.n_clicks": "action.apply",
            "actions-verify-btn.n_clicks": "action.verify",
            "actions-rollback-btn.n_clicks": "action.rollback",
        },
    ),
    DashGate(
        "console.pages.actions.open_or_close",  # read-only: opens or closes a plan's modal
        frozenset({"actions-plan-id.data", "actions-message.children"}),
        triggers={"{actions-open}.n_clicks": None, "actions-close-btn.n_clicks": None},
    ),
    DashGate(
        "console.pages.actions.demo_health",
        frozenset({"actions-demo-message.children"}),
        "demo.health",
        only_clicks=True,
    ),
    DashGate(
        "console.pages.failover.drill_action",
        frozenset({"failover-drill-result.children"}),
        "drill.run",
    ),
    DashGate(
        "console.pages.runbooks.start_run",
        frozenset({"runbooks-start-result.children"}),
        "runbook.start",
    ),
    DashGate(
        "console.pages.runbooks.control",
        frozenset({"runbooks-control-result.children"}),
        triggers={
            "runbooks-pause-btn.n_clicks": "runbook.control",
            "runbooks-resume-btn.n_clicks": "runbook.control",
            "runbooks-abort-btn.n_clicks": "runbook.control",
            "runbooks-override-btn.n_clicks": "runbook.control",
            "runbooks-approve-btn.n_clicks": "runbook.approve",
        },
    ),
    DashGate(
        "console.pages.evidence.build",
        frozenset({"evidence-build-result.children"}),
        "evidence.build",
    ),
    DashGate(
        "console.pages.evidence.issue_link",
        frozenset({"evidence-link.children"}),
        "evidence.link",
        only_clicks=True,
    ),
    DashGate(
        "console.pages.reliability.add_incident",
        frozenset({"reliability-added.children"}),
        "incident.record",
    ),
    DashGate(
        "console.pages.reliability.generate",
        frozenset({"reliability-result.children"}),
        "postmortem.generate",
    ),
)
GATES_BY_CALLBACK = {gate.callback: gate for gate in DASH_GATES}


@dataclass(frozen=True)
class Refusal:
    """Why a request may not act: 401 for nobody signed in, 403 for a missing role."""

    status: int
    message: str
    permission: str


def allowed_roles(permission: str) -> frozenset[str]:
    """The roles that may do ``permission`` (admin always may)."""
    return PERMISSIONS[permission].roles | {"admin"}


def authorize(identity: Identity | None, permission: str) -> Refusal | None:
    """None when ``identity`` may do ``permission``; else the refusal. The one role check."""
    spec = PERMISSIONS[permission]  # an unknown name is a programming error, never a pass
    roles = " or ".join(sorted(spec.roles | {"admin"}))
    if identity is None:
        return Refusal(401, f"sign in with the {roles} role to {spec.summary}", permission)
    if not (identity.roles & allowed_roles(permission)):
        return Refusal(403, f"{identity.user} may not {spec.summary} (needs {roles})", permission)
    return None


def current_identity() -> Identity | None:
    """The identity the auth layer put on this request, or None outside a request."""
    from flask import g, has_request_context

    if not has_request_context():
        return None
    identity = g.get("identity")
    return identity if isinstance(identity, Identity) else None


def trigger_key(prop_id: str) -> str:
    """`btn.n_clicks` as is; a pattern-matching id's `{"pack":"x","type":"t"}.n_clicks` as
    `{t}.n_clicks`."""
    component, _, prop = prop_id.rpartition(".")
    if component.startswith("{"):
        try:
            parsed = json.loads(component)
        except ValueError:
            return prop_id
        if isinstance(parsed, dict):
            return f"{{{parsed.get('type')}}}.{prop}"
    return prop_id


def callback_outputs(output: str) -> set[str]:
    """The `id.prop` outputs of a Dash request's `output` key (`..a.b...c.d..`, `@hash` dropped)."""
    names = (
        output[2:-2].split("...") if output.startswith("..") and output.endswith("..") else [output]
    )
    return {name.partition("@")[0] for name in names}


def callback_name(function: Any) -> str:
    """`module.name` of a registered Dash callback function."""
    return f"{getattr(function, '__module__', '')}.{getattr(function, '__name__', '')}"


def _click_values(inputs: Iterable[Any]) -> list[Any]:
    values: list[Any] = []
    for item in inputs:
        for entry in item if isinstance(item, list) else [item]:
            if isinstance(entry, dict) and entry.get("property") == "n_clicks":
                values.append(entry.get("value"))
    return values


def dash_permissions(body: Any, callback_map: Mapping[str, Any]) -> set[str]:
    """The permissions a `/_dash-update-component` body needs (empty: a read-only callback).

    The callback is found the way Dash finds it, by the body's `output` key in the app's
    ``callback_map``; a key the map does not hold fails closed: every gate writing one of its
    outputs applies.
    """
    if not isinstance(body, dict):
        return set()
    key = str(body.get("output", ""))
    changed = [c for c in body.get("changedPropIds") or [] if isinstance(c, str)]
    raw_inputs = body.get("inputs")
    clicks = _click_values(raw_inputs if isinstance(raw_inputs, list) else [])
    entry = callback_map.get(key)
    if isinstance(entry, dict) and "callback" in entry:
        gate = GATES_BY_CALLBACK.get(callback_name(entry["callback"]))
        return gate.needs(changed, clicks) if gate is not None else set()
    outputs = callback_outputs(key)
    needed: set[str] = set()
    for gate in DASH_GATES:
        if gate.outputs & outputs:
            needed |= gate.every_permission()
    return needed
