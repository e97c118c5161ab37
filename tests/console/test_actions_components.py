"""The Actions/Audit builders: plan diff, rule verdicts, override choices, links, chain banner."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from console.components import actions as view

PLAN: dict[str, Any] = {
    "plan_id": "abc123",
    "action": "opa.pin-bundle",
    "target": "opa-bundle:prod/authz",
    "environment": "prod",
    "status": "blocked",
    "requested_by": "sam",
    "before": {"bundle": "authz", "revision": "r1", "provider": "registry"},
    "after": {"bundle": "authz", "revision": "r2", "provider": "registry"},
    "rules": [
        {"name": "revision-exists", "passed": True, "reason": "registered", "overridable": False},
        {
            "name": "bundle-signature-valid",
            "passed": False,
            "reason": "tampered",
            "overridable": False,
        },
        {"name": "impact-preview", "passed": False, "reason": "3 deny→allow", "overridable": True},
    ],
    "preview": {
        "impact": {
            "replayed": 6,
            "allow_to_deny": 0,
            "deny_to_allow": 3,
            "errors": 0,
            "examples": [
                {
                    "decision_id": "d2",
                    "path": "acme/authz/allow",
                    "was": "deny",
                    "now": "allow",
                    "input": {"m": "GET"},
                }
            ],
        }
    },
    "result": {},
    "rollback_of": None,
}


def text(component: Any) -> str:
    return json.dumps(component.to_plotly_json(), default=lambda o: o.to_plotly_json())


def test_plan_body_shows_the_diff_every_rule_and_the_impact() -> None:
    body = text(view.plan_body(PLAN, viewer="cara", roles=frozenset({"captain"})))

    assert "Blocked by bundle-signature-valid, impact-preview" in body
    assert "tampered (cannot be overridden)" in body
    assert "6 recorded decisions replayed: 0 allow\\u2192deny, 3 deny\\u2192allow" in body
    assert '"data-field": "revision"' in body and "You are cara (captain)." in body


def test_only_overridable_failed_rules_can_be_ticked_for_break_glass() -> None:
    options = view.override_options(PLAN)

    assert [(o["value"], o["disabled"]) for o in options] == [
        ("bundle-signature-valid", True),
        ("impact-preview", False),
    ]


def test_action_href_prefills_the_actions_page() -> None:
    href = view.action_href(
        "route53.flip-weights", record="api.example.com.", env="prod", weights=""
    )

    parts = urlsplit(href)
    assert parts.path == "/actions"
    assert parse_qs(parts.query) == {
        "action": ["route53.flip-weights"],
        "record": ["api.example.com."],
        "env": ["prod"],
    }


def test_chain_banner_names_the_first_bad_row() -> None:
    ok = text(view.chain_banner({"ok": True, "rows": 7, "first_bad_seq": None, "problem": ""}))
    bad = text(
        view.chain_banner(
            {"ok": False, "rows": 2, "first_bad_seq": 3, "problem": "row 3 was modified"}
        )
    )

    assert "CHAIN INTACT" in ok and "7 row(s) verified" in ok
    assert "CHAIN BROKEN" in bad and "first bad row 3: row 3 was modified" in bad
