"""Pure builders for the Actions and Audit pages: plan diff, rule verdicts, impact, audit chain.

Plans arrive as `actions.registry.plan_dict` dictionaries; audit rows as plain dictionaries.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from dash import html

from console.components.html_attrs import aria_attrs, data_attrs

OK_CLASS = "qd-badge qd-status--met"
FAIL_CLASS = "qd-badge qd-status--missed"
INFO_CLASS = "qd-badge qd-status--no-data"
# The console's stylesheet has no dialog styles yet; these keep the modal usable on its own.
MODAL_STYLE = {
    "position": "fixed",
    "inset": "0",
    "background": "rgba(20, 24, 33, 0.45)",
    "display": "flex",
    "alignItems": "flex-start",
    "justifyContent": "center",
    "overflowY": "auto",
    "zIndex": 1000,
    "padding": "40px 12px",
}
MODAL_HIDDEN = {"display": "none"}
DIALOG_STYLE = {
    "background": "#fff",
    "borderRadius": "6px",
    "padding": "18px 22px",
    "maxWidth": "880px",
    "width": "100%",
    "boxShadow": "0 10px 40px rgba(0,0,0,0.25)",
}
OUTCOME_CLASSES = {
    "applied": OK_CLASS,
    "verified": OK_CLASS,
    "approved": OK_CLASS,
    "dry-run": INFO_CLASS,
    "planned": INFO_CLASS,
    "refused": FAIL_CLASS,
    "blocked": FAIL_CLASS,
    "failed": FAIL_CLASS,
    "unverified": FAIL_CLASS,
    "override": FAIL_CLASS,
}


def action_href(action: str, **params: str) -> str:
    """The Actions page URL prefilled for ``action`` (for guarded buttons on other pages).

    e.g. `action_href("route53.flip-weights", record="api.example.com.", env="prod")`.
    """
    query = urlencode({"action": action, **{k: v for k, v in params.items() if v}})
    return f"/actions?{query}"


# One colour per plan status, text always spelled out (colour is never the only signal).
STATUS_COLOURS = {
    "planned": ("#e8eefc", "#1d3f8f"),
    "blocked": ("#fde8e8", "#9b1c1c"),
    "approved": ("#efe7fb", "#5521b5"),
    "dry-run": ("#eef0f3", "#374151"),
    "applied": ("#fff4d6", "#8a5a00"),
    "verified": ("#def7ec", "#03543f"),
    "unverified": ("#fdf0e6", "#9a3412"),
    "failed": ("#fde8e8", "#9b1c1c"),
    "expired": ("#eef0f3", "#6b7280"),
}
BUTTON_STYLE = {
    "padding": "6px 14px",
    "marginRight": "8px",
    "border": "1px solid #1d3f8f",
    "borderRadius": "4px",
    "background": "#1d3f8f",
    "color": "#fff",
    "fontWeight": "600",
    "cursor": "pointer",
}
SECONDARY_BUTTON_STYLE = BUTTON_STYLE | {"background": "#fff", "color": "#1d3f8f"}
DISABLED_BUTTON_STYLE = BUTTON_STYLE | {
    "background": "#e5e7eb",
    "color": "#6b7280",
    "border": "1px solid #d1d5db",
    "cursor": "not-allowed",
}


def button_style(*, enabled: bool, primary: bool = True) -> dict[str, str]:
    """The one button look: primary or secondary, greyed out when not allowed."""
    if not enabled:
        return DISABLED_BUTTON_STYLE
    return BUTTON_STYLE if primary else SECONDARY_BUTTON_STYLE


def status_badge(status: str) -> html.Span:
    """A plan status: its own colour and its name in capitals."""
    background, colour = STATUS_COLOURS.get(status, ("#eef0f3", "#374151"))
    return html.Span(
        status.upper(),
        className=f"qd-badge qd-plan-status qd-plan-status--{status}",
        style={
            "background": background,
            "color": colour,
            "padding": "2px 8px",
            "borderRadius": "10px",
            "fontWeight": "700",
            "fontSize": "0.85em",
        },
        **data_attrs(status=status),
    )


def human(value: Any) -> str:
    """A value as a person reads it: `us-east 50 · us-west 50`, never a Python/JSON dict."""
    if value is None:
        return "—"
    if isinstance(value, dict):
        return " · ".join(f"{k} {human(v)}" for k, v in sorted(value.items())) or "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(human(v) for v in value) or "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def age_text(seconds: float) -> str:
    """`42 min`, `3 h`, `2 d`."""
    if seconds < 3600:
        return f"{max(0, int(seconds // 60))} min"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def badge(text: str, *, passed: bool | None) -> html.Span:
    """PASS/FAIL (or neutral) badge."""
    cls = INFO_CLASS if passed is None else (OK_CLASS if passed else FAIL_CLASS)
    return html.Span(text, className=cls)


def _value(value: Any) -> str:
    return human(value)


def diff_table(before: dict[str, Any], after: dict[str, Any]) -> html.Table:
    """Before → after, one row per changed or shown field (weights get one row per region)."""
    rows = []
    if isinstance(before.get("weights"), dict):
        old, new = before["weights"], after.get("weights", {})
        for region in sorted(set(old) | set(new)):
            changed = old.get(region) != new.get(region)
            rows.append(
                html.Tr(
                    [
                        html.Td(f"weight {region}"),
                        html.Td(_value(old.get(region)), className="qd-num"),
                        html.Td(_value(new.get(region)), className="qd-num"),
                        html.Td("changes" if changed else "", className="qd-muted"),
                    ],
                    **data_attrs(field=f"weight-{region}"),
                )
            )
    for key in sorted((set(before) | set(after)) - {"weights"}):
        changed = before.get(key) != after.get(key)
        rows.append(
            html.Tr(
                [
                    html.Td(key),
                    html.Td(_value(before.get(key)), className="qd-mono"),
                    html.Td(_value(after.get(key)), className="qd-mono"),
                    html.Td("changes" if changed else "", className="qd-muted"),
                ],
                **data_attrs(field=key),
            )
        )
    head = html.Thead(html.Tr([html.Th("Field"), html.Th("Before"), html.Th("After"), html.Th("")]))
    return html.Table([head, html.Tbody(rows)], className="qd-table qd-action-diff")


def rules_table(rules: list[dict[str, Any]]) -> html.Table:
    """Every rule with PASS/FAIL and its reason; rules break-glass cannot bypass are marked."""
    rows = [
        html.Tr(
            [
                html.Td(badge("PASS" if r["passed"] else "FAIL", passed=bool(r["passed"]))),
                html.Td(r["name"], className="qd-mono"),
                html.Td(
                    r["reason"] + ("" if r.get("overridable", True) else " (cannot be overridden)")
                ),
            ],
            className="qd-rule",
            **data_attrs(rule=r["name"], passed=str(bool(r["passed"])).lower()),
        )
        for r in rules
    ]
    head = html.Thead(html.Tr([html.Th("Result"), html.Th("Rule"), html.Th("Why")]))
    return html.Table([head, html.Tbody(rows)], className="qd-table qd-action-rules")


def impact_view(preview: dict[str, Any]) -> html.Div | None:
    """Replayed decisions: flips both ways and a few examples."""
    impact = preview.get("impact")
    if not impact:
        return None
    examples = [
        html.Li(
            f"{e['decision_id']} ({e['path']}): {e['was']} → {e['now']} — {human(e['input'])}",
            className="qd-mono",
        )
        for e in impact.get("examples", [])
    ]
    return html.Div(
        [
            html.H3("Impact preview", className="qd-h2"),
            html.P(
                f"{impact['replayed']} recorded decisions replayed: "
                f"{impact['allow_to_deny']} allow→deny, {impact['deny_to_allow']} deny→allow"
                + (f", {impact['errors']} could not be evaluated" if impact.get("errors") else "")
            ),
            html.Ul(examples) if examples else None,
        ],
        className="qd-action-impact",
    )


def plan_body(plan: dict[str, Any], *, viewer: str | None, roles: frozenset[str]) -> html.Div:
    """The modal's content for one plan: header, diff, rules, impact, result."""
    failed = [r["name"] for r in plan["rules"] if not r["passed"]]
    result = plan.get("result") or {}
    return html.Div(
        [
            html.H2(
                [
                    f"{plan['action']} — {plan['target']} ",
                    status_badge(plan["status"]),
                ],
                className="qd-h2",
                id="actions-modal-title",
            ),
            html.P(
                f"Plan {plan['plan_id']} in {plan['environment']}, requested by "
                f"{plan['requested_by']}"
                + (f"; rollback of {plan['rollback_of']}" if plan.get("rollback_of") else ""),
                className="qd-muted",
                **data_attrs(plan=plan["plan_id"], status=plan["status"]),
            ),
            diff_table(plan["before"], plan["after"]),
            html.H3("Rules", className="qd-h2"),
            rules_table(plan["rules"]),
            html.P(
                "Blocked by " + ", ".join(failed) if failed else "Every rule passes.",
                className="qd-action-verdict",
            ),
            impact_view(plan.get("preview") or {}),
            html.P(f"Last result: {result.get('message')}", className="qd-action-result")
            if result.get("message")
            else None,
            html.P(
                f"You are {viewer} ({', '.join(sorted(roles)) or 'no role'}).",
                className="qd-muted",
            )
            if viewer
            else html.P("Sign in to act.", className="qd-muted"),
        ]
    )


def plans_table(plans: list[dict[str, Any]], *, open_type: str) -> html.Table | html.P:
    """Recent plans with an Open button each (pattern-matching ids)."""
    if not plans:
        return html.P("No plan yet.", className="qd-muted")
    rows = [
        html.Tr(
            [
                html.Td(p["plan_id"], className="qd-mono"),
                html.Td(p["action"]),
                html.Td(p["target"], className="qd-mono"),
                html.Td(p["environment"]),
                html.Td(status_badge(p["status"])),
                html.Td(p["requested_by"]),
                html.Td(
                    html.Button(
                        "Open",
                        id={"type": open_type, "plan": p["plan_id"]},
                        style=button_style(enabled=True, primary=False),
                    )
                ),
            ],
            **data_attrs(plan=p["plan_id"]),
        )
        for p in plans
    ]
    head = html.Thead(
        html.Tr([html.Th(h) for h in ("Plan", "Action", "Target", "Env", "Status", "By", "")])
    )
    return html.Table([head, html.Tbody(rows)], className="qd-table qd-action-plans")


def override_options(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Checklist options: the failed rules a break-glass override may name."""
    return [
        {"label": f" {r['name']}", "value": r["name"], "disabled": not r.get("overridable", True)}
        for r in plan["rules"]
        if not r["passed"]
    ]


def chain_banner(verdict: dict[str, Any]) -> html.Div:
    """The audit chain's verdict: intact with a row count, or the first row that breaks it."""
    if verdict["ok"]:
        return html.Div(
            [badge("CHAIN INTACT", passed=True), f" {verdict['rows']} row(s) verified"],
            className="qd-audit-chain",
            role="status",
            **data_attrs(ok="true"),
        )
    return html.Div(
        [
            badge("CHAIN BROKEN", passed=False),
            f" first bad row {verdict['first_bad_seq']}: {verdict['problem']}",
        ],
        className="qd-audit-chain qd-error",
        role="alert",
        **data_attrs(ok="false"),
    )


def _summary(detail: dict[str, Any]) -> str:
    parts = []
    for key in ("reason", "message", "requested_by"):
        if detail.get(key):
            parts.append(f"{key}: {detail[key]}")
    if detail.get("approvers"):
        parts.append("approved by: " + ", ".join(detail["approvers"]))
    for key in ("bypassed", "overrides", "blocked_by"):
        if detail.get(key):
            parts.append(f"{key}: {', '.join(detail[key])}")
    if detail.get("verified") is not None:
        parts.append(f"verified: {detail['verified']}")
    return "; ".join(parts)


def audit_table(rows: list[dict[str, Any]]) -> html.Table | html.P:
    """Audit rows newest first: who, what, outcome, reason/approvers/overrides, before → after."""
    if not rows:
        return html.P("No guarded action recorded yet.", className="qd-muted")
    body = []
    for r in rows:
        detail = r["detail"] or {}
        change = ""
        if "before" in detail or "after" in detail:
            change = f"{_value(detail.get('before'))} → {_value(detail.get('after'))}"
        body.append(
            html.Tr(
                [
                    html.Td(str(r["seq"]), className="qd-num"),
                    html.Td(r["at"]),
                    html.Td(r["actor"]),
                    html.Td(r["action"], className="qd-mono"),
                    html.Td(r["target"], className="qd-mono"),
                    html.Td(r["environment"] or "—"),
                    html.Td(
                        html.Span(
                            r["outcome"].upper(),
                            className=OUTCOME_CLASSES.get(r["outcome"], INFO_CLASS),
                        )
                    ),
                    html.Td(_summary(detail)),
                    html.Td(change, className="qd-mono"),
                ],
                className="qd-audit-row",
                **data_attrs(seq=r["seq"], outcome=r["outcome"]),
            )
        )
    head = html.Thead(
        html.Tr(
            [
                html.Th(h)
                for h in (
                    "#",
                    "At (UTC)",
                    "Actor",
                    "Action",
                    "Target",
                    "Env",
                    "Outcome",
                    "Detail",
                    "Change",
                )
            ]
        )
    )
    return html.Table([head, html.Tbody(body)], className="qd-table qd-audit")


def message_box(text: str, *, ok: bool) -> html.Div:
    """The modal's answer line (alert when refused)."""
    return html.Div(
        text,
        className="qd-action-message" + ("" if ok else " qd-error"),
        role="status" if ok else "alert",
        **data_attrs(ok=str(ok).lower()),
    )


def modal_frame(children: list[Any], *, body_id: str, **aria: Any) -> html.Div:
    """The dialog container (content filled by callbacks)."""
    return html.Div(
        html.Div(children, style=DIALOG_STYLE, role="dialog", **aria_attrs(modal="true", **aria)),
        id=body_id,
        style=MODAL_HIDDEN,
    )


def steps_view(steps: dict[str, Any]) -> html.Div:
    """The steps left for a plan and who must act next (from `ActionService.next_steps`)."""
    items = [
        html.Li(
            [
                html.Span("✓ " if st["done"] else "○ ", className="qd-muted"),
                st["step"],
                ": ",
                st["text"],
            ],
            className="qd-action-step" + (" qd-action-step--done" if st["done"] else ""),
            **data_attrs(step=st["step"], done=str(bool(st["done"])).lower()),
        )
        for st in steps["steps"]
    ]
    approvals = [
        f"{a['approver']} until {a['expires_at'][:16].replace('T', ' ')} UTC"
        + ("" if a["valid"] else " (no longer counts)")
        for a in steps.get("approvals") or []
    ]
    return html.Div(
        [
            html.Ol(items, className="qd-action-steps"),
            html.P(["Next: ", html.Strong(steps["next"])], className="qd-action-next"),
            html.P("Approvals: " + "; ".join(approvals), className="qd-muted")
            if approvals
            else None,
        ],
        className="qd-action-progress",
    )


def weights_change(plan: dict[str, Any]) -> str:
    """`us-east 50→20 · us-west 50→80` for a flip; `before → after` otherwise."""
    old, new = plan["before"].get("weights"), plan["after"].get("weights")
    if isinstance(old, dict) and isinstance(new, dict):
        return " · ".join(
            f"{r} {old.get(r, '—')}→{new.get(r, '—')}" for r in sorted(set(old) | set(new))
        )
    keys = sorted(
        k
        for k in set(plan["before"]) | set(plan["after"])
        if plan["before"].get(k) != plan["after"].get(k)
    )
    return " · ".join(
        f"{k} {human(plan['before'].get(k))}→{human(plan['after'].get(k))}" for k in keys
    )


def inbox_view(entries: list[dict[str, Any]], *, open_type: str, signed_in: bool) -> Any:
    """The approvals inbox: plans waiting for this user's approval, oldest first."""
    if not signed_in:
        return html.P(
            "Sign in as a captain to see plans waiting for approval.", className="qd-muted"
        )
    if not entries:
        return html.P("Nothing waits for your approval.", className="qd-muted qd-inbox-empty")
    rows = [
        html.Tr(
            [
                html.Td(e["plan_id"], className="qd-mono"),
                html.Td(e["action"]),
                html.Td(e["target"], className="qd-mono"),
                html.Td(e["environment"]),
                html.Td(weights_change(e), className="qd-mono"),
                html.Td(
                    "every rule passes"
                    if all(r["passed"] for r in e["rules"])
                    else "fails: " + ", ".join(r["name"] for r in e["rules"] if not r["passed"])
                ),
                html.Td(e["requested_by"]),
                html.Td(age_text(float(e["age_s"]))),
                html.Td(e["expires_at"][:16].replace("T", " ") + " UTC"),
                html.Td(
                    html.Button(
                        "Review",
                        id={"type": open_type, "plan": "inbox:" + e["plan_id"]},
                        style=button_style(enabled=True),
                    )
                ),
            ],
            className="qd-inbox-row",
            **data_attrs(plan=e["plan_id"]),
        )
        for e in entries
    ]
    head = html.Thead(
        html.Tr(
            [
                html.Th(h)
                for h in (
                    "Plan",
                    "Action",
                    "Target",
                    "Env",
                    "Change",
                    "Rules",
                    "By",
                    "Age",
                    "Expires",
                    "",
                )
            ]
        )
    )
    return html.Table([head, html.Tbody(rows)], className="qd-table qd-inbox")


def inbox_indicator(count: int | None) -> Any:
    """The header's approvals count (None: the user may not approve, nothing shown)."""
    if count is None:
        return None
    return html.A(
        f"Approvals: {count}",
        href="/actions#inbox",
        className="qd-inbox-indicator",
        style={
            "padding": "2px 10px",
            "borderRadius": "10px",
            "fontWeight": "700",
            "background": "#fde8e8" if count else "#eef0f3",
            "color": "#9b1c1c" if count else "#374151",
        },
        **data_attrs(count=count),
    )


def record_status_table(rows: list[dict[str, Any]]) -> html.Table:
    """A record's regions now: weight, share by weight, observed share, health and why."""
    body = [
        html.Tr(
            [
                html.Td(r["region"]),
                html.Td(str(r["weight"]), className="qd-num"),
                html.Td(f"{r['share']:.0f}%", className="qd-num"),
                html.Td(
                    "—" if r["observed_share"] is None else f"{r['observed_share']:.0f}%",
                    className="qd-num",
                ),
                html.Td(
                    badge(
                        {True: "HEALTHY", False: "UNHEALTHY", None: "UNKNOWN"}[r["healthy"]],
                        passed=r["healthy"],
                    )
                ),
                html.Td(r["health"], className="qd-muted"),
            ],
            **data_attrs(region=r["region"], healthy=str(r["healthy"]).lower()),
        )
        for r in rows
    ]
    head = html.Thead(
        html.Tr(
            [html.Th(h) for h in ("Region", "Weight", "Share", "Observed", "Health", "Evidence")]
        )
    )
    return html.Table([head, html.Tbody(body)], className="qd-table qd-record-status")


def weights_text(rows: list[dict[str, Any]]) -> str:
    """The form's weights field prefilled with the current weights (`us-east=50,us-west=50`)."""
    return ",".join(f"{r['region']}={r['weight']}" for r in rows)


SIGNATURE_TEXT = {"verified": "SIGNED", "unsigned": "UNSIGNED", "invalid": "TAMPERED"}


def pin_bundle_options(choices: list[dict[str, Any]], environment: str) -> list[dict[str, str]]:
    """The pin form's bundles, each with what ``environment`` serves now."""
    seen: dict[str, str | None] = {}
    for c in choices:
        seen.setdefault(c["bundle"], c["current"])
    return [
        {
            "label": f"{b} (pinned in {environment}: {cur})"
            if cur
            else f"{b} (nothing pinned in {environment})",
            "value": b,
        }
        for b, cur in seen.items()
    ]


def pin_revision_options(choices: list[dict[str, Any]], bundle: str | None) -> list[dict[str, str]]:
    """The registered revisions of ``bundle`` with their signature verdict (newest first)."""
    return [
        {
            "label": f"{c['revision']} — "
            + SIGNATURE_TEXT.get(c["signature_status"], c["signature_status"].upper())
            + (" · pinned now" if c["pinned"] else ""),
            "value": c["revision"],
        }
        for c in choices
        if c["bundle"] == bundle
    ]


def pin_choices_table(
    choices: list[dict[str, Any]], bundle: str | None, environment: str
) -> html.Table | html.P:
    """The picked bundle's revisions: signature verdict and why, when added, pinned or not."""
    rows = [c for c in choices if c["bundle"] == bundle]
    if not bundle:
        return html.P("Pick a bundle the registry knows.", className="qd-muted")
    if not rows:
        return html.P(f"No registered revision of {bundle}.", className="qd-muted")
    body = [
        html.Tr(
            [
                html.Td(c["revision"]),
                html.Td(
                    badge(
                        SIGNATURE_TEXT.get(c["signature_status"], c["signature_status"].upper()),
                        passed=c["signature_status"] == "verified",
                    )
                ),
                html.Td(c["signature_detail"] or "—", className="qd-muted"),
                html.Td(c["added_at"]),
                html.Td(f"pinned in {environment}" if c["pinned"] else ""),
            ],
            **data_attrs(
                revision=c["revision"],
                signature=c["signature_status"],
                pinned=str(c["pinned"]).lower(),
            ),
        )
        for c in rows
    ]
    head = html.Thead(
        html.Tr([html.Th(h) for h in ("Revision", "Signature", "Why", "Registered", "Pin")])
    )
    return html.Table([head, html.Tbody(body)], className="qd-table qd-pin-choices")
