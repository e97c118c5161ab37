"""Actions: plan a DNS weight flip or a bundle pin, see every rule, then approve/apply in a modal.

A plan is the preview (computed without side effects); approval attaches to it; Apply is the only
step that changes the world, live where the environment allows it. The modal shows the steps
left and who acts next; captains see the plans waiting for them in the approvals inbox. The flip
form picks a record the Route 53 collector knows and shows its weights, shares and health.

Thin callbacks: `make_plan` (the form), `open_or_close` (the modal, read-only), `act`
(approve / apply / verify / roll back) and, in demo mode, `demo_health` (the demo control that
makes a region unhealthy). Each reads `flask.g.identity` and calls the action service,
which checks the role, the two-person rule, break-glass and drift itself; what the page enables or
hides is convenience only. Query arguments (`?action=&record=&env=&bundle=&revision=`)
prefill the form so the Traffic and Policy pages can link here.
"""

from __future__ import annotations

import logging
from typing import Any

import dash
import flask
from dash import ALL, Input, Output, State, ctx, dcc, html, no_update

from actions.base import InvalidParams
from actions.dns_weights import known_records
from actions.registry import plan_dict
from console.auth.users import actor_of
from console.callbacks import callback
from console.components import actions as view
from console.runtime import get_context
from console.wiring import build_service
from store.queries.actions import pin_choices, recent_plans

dash.register_page(
    __name__, path="/actions", name="Actions", title="Quarterdeck — Actions", order=50
)

log = logging.getLogger(__name__)

KIND = "actions-kind"
ENV = "actions-env"
RECORD = "actions-record"
WEIGHTS = "actions-weights"
BUNDLE = "actions-bundle"
REVISION = "actions-revision"
PROVIDER = "actions-provider"
PLAN_BTN = "actions-plan-btn"
DNS_FIELDS = "actions-dns-fields"
PIN_FIELDS = "actions-pin-fields"
PLANS = "actions-plans"
OPEN = "actions-open"
PLAN_ID = "actions-plan-id"
VERSION = "actions-version"
MODAL = "actions-modal"
MODAL_BODY = "actions-modal-body"
REASON = "actions-reason"
OVERRIDE = "actions-override"
OVERRIDE_ROW = "actions-override-row"
APPROVE_BTN = "actions-approve-btn"
APPLY_BTN = "actions-apply-btn"
VERIFY_BTN = "actions-verify-btn"
ROLLBACK_BTN = "actions-rollback-btn"
CLOSE_BTN = "actions-close-btn"
MESSAGE = "actions-message"
FORM_MESSAGE = "actions-form-message"
WHO = "actions-who"
INBOX = "actions-inbox"
RECORD_STATUS = "actions-record-status"
PIN_CHOICES = "actions-pin-choices"
STEPS = "actions-steps"
DEMO_HEALTH = "actions-demo-health"
DEMO_MESSAGE = "actions-demo-message"
INBOX_PREFIX = "inbox:"

FLIP = "route53.flip-weights"
PIN = "opa.pin-bundle"
ENVIRONMENTS = ["dev", "stage", "prod"]
PLANS_SHOWN = 25


def _field(label: str, control: Any) -> html.Label:
    return html.Label(
        [html.Span(label, className="qd-selector-label"), control], className="qd-selector"
    )


def layout(
    action: str | None = None,
    env: str | None = None,
    record: str | None = None,
    weights: str | None = None,
    bundle: str | None = None,
    revision: str | None = None,
    **_other: Any,
) -> html.Div:
    """Skeleton prefilled from the query string; callbacks fill the plans and the modal."""
    kind = action if action in (FLIP, PIN) else FLIP
    return html.Div(
        [
            html.H1("Guarded actions", className="qd-title"),
            html.P(id=WHO, className="qd-muted"),
            html.Section(
                [
                    dcc.RadioItems(
                        id=KIND,
                        options=[
                            {"label": " Flip DNS weights (Route 53)", "value": FLIP},
                            {"label": " Pin OPA bundle", "value": PIN},
                        ],
                        value=kind,
                        inline=True,
                    ),
                    _field(
                        "Environment",
                        dcc.Dropdown(
                            id=ENV,
                            options=ENVIRONMENTS,
                            value=env if env else "stage",
                            clearable=False,
                            searchable=False,
                        ),
                    ),
                    html.Div(
                        [
                            _field(
                                "Record",
                                dcc.Dropdown(
                                    id=RECORD,
                                    options=[record] if record else [],
                                    value=record or None,
                                    placeholder="Pick a record the Route 53 collector knows",
                                ),
                            ),
                            html.Div(id=RECORD_STATUS),
                            _field(
                                "Weights (region=0–255,…)",
                                dcc.Input(id=WEIGHTS, value=weights or "", type="text"),
                            ),
                        ],
                        id=DNS_FIELDS,
                    ),
                    html.Div(
                        [
                            _field(
                                "Bundle",
                                dcc.Dropdown(
                                    id=BUNDLE,
                                    options=[bundle] if bundle else [],
                                    value=bundle or None,
                                    placeholder="Pick a bundle the registry knows",
                                ),
                            ),
                            _field(
                                "Revision",
                                dcc.Dropdown(
                                    id=REVISION,
                                    options=[revision] if revision else [],
                                    value=revision or None,
                                    placeholder="Pick a registered revision",
                                ),
                            ),
                            html.Div(id=PIN_CHOICES),
                            _field(
                                "Provider",
                                dcc.Dropdown(
                                    id=PROVIDER,
                                    options=["registry", "kubernetes"],
                                    value="registry",
                                    clearable=False,
                                    searchable=False,
                                ),
                            ),
                        ],
                        id=PIN_FIELDS,
                    ),
                    html.Button("Preview plan", id=PLAN_BTN, style=view.button_style(enabled=True)),
                    html.P(
                        "Previewing changes nothing. A production plan then needs a captain's "
                        "approval; Apply makes the change.",
                        className="qd-muted",
                    ),
                    html.Div(id=FORM_MESSAGE),
                ],
                className="qd-section qd-action-form",
            ),
            _demo_controls(),
            html.H2("Waiting for your approval", className="qd-h2", id="inbox"),
            html.Div(id=INBOX),
            html.H2("Recent plans", className="qd-h2"),
            html.Div(html.P("Reading plans…", className="qd-muted"), id=PLANS),
            dcc.Store(id=PLAN_ID),
            dcc.Store(id=VERSION, data=0),
            view.modal_frame(
                [
                    html.Div(id=MODAL_BODY),
                    _field(
                        "Reason (required)",
                        dcc.Textarea(id=REASON, value="", style={"width": "100%", "height": "3em"}),
                    ),
                    html.Div(id=STEPS),
                    html.Div(
                        [
                            html.Span("Break-glass (admin): bypass ", className="qd-muted"),
                            dcc.Checklist(id=OVERRIDE, options=[], value=[], inline=True),
                        ],
                        id=OVERRIDE_ROW,
                        style={"display": "none"},
                    ),
                    html.Div(
                        [
                            html.Button("Approve", id=APPROVE_BTN, disabled=True),
                            html.Button("Apply", id=APPLY_BTN, disabled=True),
                            html.Button("Verify", id=VERIFY_BTN, disabled=True),
                            html.Button("Roll back", id=ROLLBACK_BTN, disabled=True),
                            html.Button(
                                "Close",
                                id=CLOSE_BTN,
                                style=view.button_style(enabled=True, primary=False),
                            ),
                        ],
                        className="qd-action-buttons",
                    ),
                    html.Div(id=MESSAGE),
                ],
                body_id=MODAL,
                labelledby="actions-modal-title",
            ),
        ],
        className="qd-page qd-page--actions",
    )


@callback(
    Output(DNS_FIELDS, "style"),
    Output(PIN_FIELDS, "style"),
    Input(KIND, "value"),
)
def show_fields(kind: str) -> tuple[dict[str, str], dict[str, str]]:
    """Show the inputs of the chosen action."""
    hidden: dict[str, str] = {"display": "none"}
    shown: dict[str, str] = {}
    return (shown, hidden) if kind == FLIP else (hidden, shown)


def _identity() -> Any:
    return getattr(flask.g, "identity", None)


@callback(Output(PLANS, "children"), Output(WHO, "children"), Input(VERSION, "data"))
def show_plans(_version: int) -> tuple[Any, str]:
    """List recent plans (read-only; runs on load)."""
    identity = _identity()
    who = (
        f"Signed in as {identity.user} ({', '.join(sorted(identity.roles))})"
        if identity
        else "Not signed in: you can look, not act."
    )
    with get_context().session() as session:
        plans = [plan_dict(p) for p in recent_plans(session, limit=PLANS_SHOWN)]
    return view.plans_table(plans, open_type=OPEN), who


def _refusal() -> Any:
    """The message shown when nobody is signed in (the service refuses anyway)."""
    return view.message_box("Sign in to act.", ok=False)


@callback(
    Output(PLAN_ID, "data"),
    Output(VERSION, "data"),
    Output(MESSAGE, "children"),
    Output(FORM_MESSAGE, "children"),
    Input(PLAN_BTN, "n_clicks"),
    State(KIND, "value"),
    State(ENV, "value"),
    State(RECORD, "value"),
    State(WEIGHTS, "value"),
    State(BUNDLE, "value"),
    State(REVISION, "value"),
    State(PROVIDER, "value"),
    State(REASON, "value"),
    State(VERSION, "data"),
    prevent_initial_call=True,
)
def make_plan(
    _plan: int | None,
    kind: str,
    env: str,
    record: str,
    weights: str,
    bundle: str | None,
    revision: str | None,
    provider: str,
    reason: str | None,
    version: int | None,
) -> tuple[Any, Any, Any, Any]:
    """Plan the chosen action; the service checks role and rules and explains a refusal."""
    identity = _identity()
    if identity is None:
        return no_update, no_update, None, _refusal()
    params: dict[str, Any] = (
        {"record": record, "weights": weights}
        if kind == FLIP
        else {"bundle": bundle or "", "revision": revision or "", "provider": provider}
    )
    context = get_context()
    with context.session() as session:
        result = build_service(context.settings).plan(
            session, actor_of(identity), kind, params, env, reason=reason or ""
        )
    box = view.message_box(result.message, ok=result.ok)
    bump = (version or 0) + 1
    if result.plan is None:
        return no_update, bump, None, box
    return result.plan.plan_id, bump, box, None


@callback(
    Output(PLAN_ID, "data", allow_duplicate=True),
    Output(VERSION, "data", allow_duplicate=True),
    Output(MESSAGE, "children", allow_duplicate=True),
    Input({"type": OPEN, "plan": ALL}, "n_clicks"),
    Input(CLOSE_BTN, "n_clicks"),
    State(VERSION, "data"),
    prevent_initial_call=True,
)
def open_or_close(
    opens: list[int | None], _close: int | None, version: int | None
) -> tuple[Any, Any, Any]:
    """Open a listed plan in the modal, or close the modal (read-only)."""
    trigger = ctx.triggered_id
    bump = (version or 0) + 1
    if trigger == CLOSE_BTN:
        return None, bump, None
    if not isinstance(trigger, dict) or not any(opens):  # a re-rendered table, not a click
        return no_update, no_update, no_update
    return str(trigger["plan"]).removeprefix(INBOX_PREFIX), bump, None


@callback(
    Output(PLAN_ID, "data", allow_duplicate=True),
    Output(VERSION, "data", allow_duplicate=True),
    Output(MESSAGE, "children", allow_duplicate=True),
    Input(APPROVE_BTN, "n_clicks"),
    Input(APPLY_BTN, "n_clicks"),
    Input(VERIFY_BTN, "n_clicks"),
    Input(ROLLBACK_BTN, "n_clicks"),
    State(PLAN_ID, "data"),
    State(REASON, "value"),
    State(OVERRIDE, "value"),
    State(VERSION, "data"),
    prevent_initial_call=True,
)
def act(
    _approve: int | None,
    _apply: int | None,
    _verify: int | None,
    _rollback: int | None,
    plan_id: str | None,
    reason: str | None,
    override: list[str] | None,
    version: int | None,
) -> tuple[Any, Any, Any]:
    """Approve, apply, verify or roll back the open plan; every check happens in the service."""
    trigger = ctx.triggered_id
    identity = _identity()
    if identity is None:
        return no_update, no_update, _refusal()
    if not plan_id:
        return no_update, no_update, view.message_box("Open a plan first.", ok=False)
    actor = actor_of(identity)
    context = get_context()
    service = build_service(context.settings)
    with context.session() as session:
        if trigger == APPROVE_BTN:
            result = service.approve(session, actor, plan_id)
        elif trigger == APPLY_BTN:
            result = service.apply(
                session,
                actor,
                plan_id,
                reason=reason or "",
                override=list(override or []),
            )
        elif trigger == VERIFY_BTN:
            result = service.verify(session, actor, plan_id)
        else:
            result = service.rollback(session, actor, plan_id, reason=reason or "")
    shown = result.plan.plan_id if result.plan is not None else plan_id
    return shown, (version or 0) + 1, view.message_box(result.message, ok=result.ok)


BUTTONS = (
    ("approve", APPROVE_BTN, True),
    ("apply", APPLY_BTN, True),
    ("verify", VERIFY_BTN, False),
    ("rollback", ROLLBACK_BTN, False),
)


@callback(
    Output(MODAL, "style"),
    Output(MODAL_BODY, "children"),
    Output(OVERRIDE, "options"),
    Output(OVERRIDE, "value"),
    Output(OVERRIDE_ROW, "style"),
    Output(STEPS, "children"),
    *[Output(button, "disabled") for _, button, _ in BUTTONS],
    *[Output(button, "style") for _, button, _ in BUTTONS],
    Input(PLAN_ID, "data"),
    Input(VERSION, "data"),
)
def show_modal(plan_id: str | None, _version: int) -> tuple[Any, ...]:
    """Open the modal on the current plan: steps left, and only the buttons allowed now."""
    identity = _identity()
    actor = actor_of(identity) if identity else None
    data = steps = None
    if plan_id:
        context = get_context()
        service = build_service(context.settings)
        with context.session() as session:
            plan = service.get(session, plan_id)
            if plan is not None:
                data = plan_dict(plan)
                steps = service.next_steps(session, plan, actor)
    if data is None or steps is None:
        off = [view.button_style(enabled=False) for _ in BUTTONS]
        return (view.MODAL_HIDDEN, None, [], [], {"display": "none"}, None, *[True] * 4, *off)
    may = steps["may"]
    roles = identity.roles if identity else frozenset()
    user = identity.user if identity else None
    return (
        view.MODAL_STYLE,
        view.plan_body(data, viewer=user, roles=roles),
        view.override_options(data),
        [],
        {} if may["override"] else {"display": "none"},
        view.steps_view(steps),
        *[not may[name] for name, _, _ in BUTTONS],
        *[view.button_style(enabled=may[name], primary=primary) for name, _, primary in BUTTONS],
    )


@callback(Output(INBOX, "children"), Input(VERSION, "data"))
def show_inbox(_version: int) -> Any:
    """The approvals inbox of the signed-in user (read-only)."""
    identity = _identity()
    if identity is None:
        return view.inbox_view([], open_type=OPEN, signed_in=False)
    context = get_context()
    with context.session() as session:
        entries = build_service(context.settings).inbox(session, actor_of(identity))
    return view.inbox_view(entries, open_type=OPEN, signed_in=True)


@callback(Output(RECORD, "options"), Input(VERSION, "data"), State(RECORD, "value"))
def record_options(_version: int, current: str | None) -> list[dict[str, str]]:
    """The records the Route 53 collector knows, with their last observed weights (read-only)."""
    with get_context().session() as session:
        known = known_records(session)
    options = [
        {"label": f"{r['record']} ({r['type']}: {view.human(r['weights'])})", "value": r["record"]}
        for r in known
    ]
    if current and current not in {o["value"] for o in options}:
        options.append({"label": current, "value": current})
    return options


@callback(
    Output(RECORD_STATUS, "children"),
    Output(WEIGHTS, "value"),
    Input(RECORD, "value"),
    State(WEIGHTS, "value"),
)
def record_status(record: str | None, weights: str | None) -> tuple[Any, Any]:
    """The picked record's regions now (weights, shares, health); prefills empty weights."""
    if not record:
        return None, no_update
    context = get_context()
    flip = build_service(context.settings).actions[FLIP]
    try:
        with context.session() as session:
            rows = flip.record_status(session, record)  # type: ignore[attr-defined]
    except InvalidParams as exc:
        return view.message_box(str(exc), ok=False), no_update
    return view.record_status_table(rows), no_update if weights else view.weights_text(rows)


@callback(
    Output(BUNDLE, "options"),
    Output(REVISION, "options"),
    Output(PIN_CHOICES, "children"),
    Input(ENV, "value"),
    Input(BUNDLE, "value"),
    Input(VERSION, "data"),
    State(REVISION, "value"),
)
def pin_picker(
    environment: str | None, bundle: str | None, _version: int, revision: str | None
) -> tuple[Any, Any, Any]:
    """The registry's bundles (with the environment's pin) and the picked bundle's revisions
    with their signature verdicts (read-only)."""
    environment = environment or "stage"
    with get_context().session() as session:
        choices = pin_choices(session, environment)
    bundles = view.pin_bundle_options(choices, environment)
    revisions = view.pin_revision_options(choices, bundle)
    if bundle and bundle not in {o["value"] for o in bundles}:
        bundles.append({"label": bundle, "value": bundle})
    if revision and revision not in {o["value"] for o in revisions}:
        revisions.append({"label": revision, "value": revision})
    return bundles, revisions, view.pin_choices_table(choices, bundle, environment)


def _demo_controls() -> Any:
    """Demo mode only: make a region unhealthy (inverts its Route 53 health check in moto)."""
    if not get_context().settings.demo_mode:
        return None
    from demo.route53 import DEMO_RECORD, DEMO_REGIONS

    buttons = [
        html.Button(
            f"Make {region} {'healthy' if healthy else 'unhealthy'}",
            id={"type": DEMO_HEALTH, "region": region, "healthy": "yes" if healthy else "no"},
            style=view.button_style(enabled=True, primary=False),
        )
        for region in DEMO_REGIONS
        for healthy in (False, True)
    ]
    return html.Section(
        [
            html.H2("Demo: region health", className="qd-h2"),
            html.P(
                f"Inverts the region's Route 53 health check for {DEMO_RECORD} (as an operator "
                "tests failover in AWS); a flip towards it is then blocked by "
                "target-region-healthy.",
                className="qd-muted",
            ),
            html.Div(buttons),
            html.Div(id=DEMO_MESSAGE),
        ],
        className="qd-section qd-demo-health",
    )


@callback(
    Output(DEMO_MESSAGE, "children"),
    Output(VERSION, "data", allow_duplicate=True),
    Input({"type": DEMO_HEALTH, "region": ALL, "healthy": ALL}, "n_clicks"),
    State(VERSION, "data"),
    prevent_initial_call=True,
)
def demo_health(clicks: list[int | None], version: int | None) -> tuple[Any, Any]:
    """Demo control: set a region's health (sign-in with sre or captain required)."""
    trigger = ctx.triggered_id
    if not isinstance(trigger, dict) or not any(clicks):
        return no_update, no_update
    identity = _identity()
    context = get_context()
    if identity is None or not actor_of(identity).may_plan or not context.settings.demo_mode:
        return view.message_box("Sign in as sre or captain (demo mode only).", ok=False), no_update
    from console.clients import route53_client
    from demo.route53 import set_region_health

    healthy = trigger["healthy"] == "yes"
    try:
        set_region_health(route53_client(context.settings), trigger["region"], healthy=healthy)
    except Exception as exc:  # the demo's stand-in may be missing: say so, do not crash
        log.warning("demo health control failed: %s", exc)
        return view.message_box(f"Demo control failed: {exc}", ok=False), no_update
    state = "healthy" if healthy else "unhealthy"
    return (
        view.message_box(f"{trigger['region']} is now {state} (demo)", ok=True),
        (version or 0) + 1,
    )
