"""Actions: plan a DNS weight flip or a bundle pin, see every rule, then approve/apply in a modal.

Three thin callbacks: `make_plan` (the form), `open_or_close` (the modal, read-only) and `act`
(approve / apply / verify / roll back). Each reads `flask.g.identity` and calls the action service,
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

from actions.registry import plan_dict
from console.auth.users import actor_of
from console.callbacks import callback
from console.components import actions as view
from console.runtime import get_context
from console.wiring import build_service
from store.queries.actions import plan_by_id, recent_plans

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
LIVE = "actions-live"
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
                            _field("Record", dcc.Input(id=RECORD, value=record or "", type="text")),
                            _field(
                                "Weights (region=0–255,…)",
                                dcc.Input(id=WEIGHTS, value=weights or "", type="text"),
                            ),
                        ],
                        id=DNS_FIELDS,
                    ),
                    html.Div(
                        [
                            _field("Bundle", dcc.Input(id=BUNDLE, value=bundle or "", type="text")),
                            _field(
                                "Revision",
                                dcc.Input(id=REVISION, value=revision or "", type="text"),
                            ),
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
                    html.Button("Plan", id=PLAN_BTN),
                    html.Div(id=FORM_MESSAGE),
                ],
                className="qd-section qd-action-form",
            ),
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
                    dcc.Checklist(
                        id=LIVE,
                        options=[{"label": " Live (default is a dry run)", "value": "live"}],
                        value=[],
                    ),
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
                            html.Button("Approve", id=APPROVE_BTN),
                            html.Button("Apply", id=APPLY_BTN),
                            html.Button("Verify", id=VERIFY_BTN),
                            html.Button("Roll back", id=ROLLBACK_BTN),
                            html.Button("Close", id=CLOSE_BTN),
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
    bundle: str,
    revision: str,
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
        else {"bundle": bundle, "revision": revision, "provider": provider}
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
    return trigger["plan"], bump, None


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
    State(LIVE, "value"),
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
    live: list[str] | None,
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
                live="live" in (live or []),
                override=list(override or []),
            )
        elif trigger == VERIFY_BTN:
            result = service.verify(session, actor, plan_id)
        else:
            result = service.rollback(session, actor, plan_id, reason=reason or "")
    shown = result.plan.plan_id if result.plan is not None else plan_id
    return shown, (version or 0) + 1, view.message_box(result.message, ok=result.ok)


@callback(
    Output(MODAL, "style"),
    Output(MODAL_BODY, "children"),
    Output(OVERRIDE, "options"),
    Output(OVERRIDE, "value"),
    Output(APPROVE_BTN, "disabled"),
    Output(OVERRIDE_ROW, "style"),
    Input(PLAN_ID, "data"),
    Input(VERSION, "data"),
)
def show_modal(plan_id: str | None, _version: int) -> tuple[Any, ...]:
    """Open the modal on the current plan (read-only render)."""
    if not plan_id:
        return view.MODAL_HIDDEN, None, [], [], True, {"display": "none"}
    with get_context().session() as session:
        plan = plan_by_id(session, plan_id)
        data = plan_dict(plan) if plan is not None else None
    if data is None:
        return view.MODAL_HIDDEN, None, [], [], True, {"display": "none"}
    identity = _identity()
    roles = identity.roles if identity else frozenset()
    user = identity.user if identity else None
    can_approve = identity is not None and identity.has("captain") and user != data["requested_by"]
    admin = "admin" in roles
    return (
        view.MODAL_STYLE,
        view.plan_body(data, viewer=user, roles=roles),
        view.override_options(data),
        [],
        not can_approve,
        {} if admin else {"display": "none"},
    )
