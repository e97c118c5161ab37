"""Reliability: error budgets and burn rates per SLO, the error-budget policy state, incidents,
their unified timeline, and the postmortem generator.

Budgets are evaluated as of the end of the selected window (or now, if earlier), snapped to the
newest SLO sample so a collector's last step is not read as a gap. Generating a postmortem and
entering an incident need the `sre` role.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import dash
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html

from collectors import incidents as incident_source
from console import evidence_service as service
from console.callbacks import callback
from console.components import errors
from console.components.reliability import (
    budget_table,
    burn_figure,
    incidents_table,
    oncall_panels,
    postmortem_result,
    postmortems_list,
    timeline_list,
)
from console.context import AppContext
from console.runtime import get_context
from console.shell import BASELINE_RANGE, RANGE_STORE, SPRINT_STORE
from evidence.postmortem import PostmortemError, generate_postmortem
from store.goals import SprintConfigError
from store.ingest import utcnow
from store.metrics import Window
from store.queries.reliability import (
    alerts_frame,
    budget_frame,
    burn_frame,
    incidents_frame,
    latest_sample_at,
    postmortems_frame,
    timeline_frame,
)
from store.slo import SloConfigError, load_oncall

dash.register_page(
    __name__,
    path="/reliability",
    name="Reliability",
    title="Quarterdeck — Reliability",
    order=70,
)

log = logging.getLogger(__name__)

BODY = "reliability-body"
SLO = "reliability-slo"
BURN = "reliability-burn"
INCIDENT = "reliability-incident"
TIMELINE = "reliability-timeline"
ITEMS = "reliability-action-items"
OPEN_ISSUE = "reliability-open-issue"
GENERATE = "reliability-generate"
RESULT = "reliability-result"
NEW_KEY = "reliability-new-key"
NEW_TITLE = "reliability-new-title"
NEW_SEVERITY = "reliability-new-severity"
NEW_SERVICE = "reliability-new-service"
NEW_STARTED = "reliability-new-started"
NEW_RESOLVED = "reliability-new-resolved"
ADD = "reliability-add-incident"
ADDED = "reliability-added"
POSTMORTEM_PERMISSION = "postmortem.generate"  # role sre: console.auth.permissions
INCIDENT_PERMISSION = "incident.record"


def layout() -> html.Div:
    """Skeleton only; the callbacks fill it."""
    return html.Div(
        [
            html.H1("Reliability", className="qd-title"),
            dcc.Loading(
                html.Div(html.P("Evaluating error budgets…", className="qd-muted"), id=BODY),
                type="dot",
                delay_show=200,
            ),
            html.Section(
                [
                    html.H2("Burn rates", className="qd-h"),
                    dcc.Dropdown(id=SLO, options=[], clearable=False, placeholder="SLO"),
                    dcc.Graph(id=BURN, figure=go.Figure(), config={"displaylogo": False}),
                ],
                className="qd-section",
            ),
            html.Section(
                [
                    html.H2("Incident timeline and postmortem", className="qd-h"),
                    dcc.Dropdown(id=INCIDENT, options=[], placeholder="Incident"),
                    html.Div(id=TIMELINE),
                    dcc.Textarea(
                        id=ITEMS,
                        placeholder="Action items, one per line",
                        style={"width": "100%", "height": "5rem"},
                    ),
                    dcc.Checklist(
                        id=OPEN_ISSUE,
                        options=[{"label": " open a GitHub issue", "value": "issue"}],
                        value=[],
                    ),
                    html.Button("Generate postmortem", id=GENERATE, n_clicks=0),
                    html.Div(id=RESULT),
                ],
                className="qd-section",
            ),
            html.Section(
                [
                    html.H2("Enter an incident", className="qd-h"),
                    dcc.Input(id=NEW_KEY, placeholder="INC-1234"),
                    dcc.Input(id=NEW_TITLE, placeholder="Title"),
                    dcc.Dropdown(
                        id=NEW_SEVERITY,
                        options=sorted(incident_source.SEVERITIES),
                        value="sev3",
                        clearable=False,
                    ),
                    dcc.Input(id=NEW_SERVICE, placeholder="service"),
                    dcc.Input(id=NEW_STARTED, placeholder="started 2025-11-18T09:12:00Z"),
                    dcc.Input(id=NEW_RESOLVED, placeholder="resolved (optional)"),
                    html.Button("Record incident", id=ADD, n_clicks=0),
                    html.Div(id=ADDED),
                ],
                className="qd-section",
            ),
        ],
        className="qd-page qd-page--reliability",
    )


def _window(ctx: AppContext, slug: str | None, range_key: str | None) -> Window:
    sprint = ctx.sprint(slug or ctx.settings.default_sprint)
    return sprint.baseline_window() if range_key == BASELINE_RANGE else sprint.window.window()


def as_of(ctx: AppContext, window: Window) -> datetime:
    """The instant budgets are evaluated at (see module docstring)."""
    end = min(window.end, utcnow())
    with ctx.session() as session:
        latest = latest_sample_at(session, before=end)
    return latest if latest is not None and latest >= window.start else end


@callback(
    Output(BODY, "children"),
    Output(SLO, "options"),
    Output(SLO, "value"),
    Output(INCIDENT, "options"),
    Input(SPRINT_STORE, "data"),
    Input(RANGE_STORE, "data"),
)
def show_reliability(slug: str | None, range_key: str | None) -> tuple[Any, ...]:
    """Evaluate every SLO's budget and list incidents and postmortems for the window."""
    ctx = get_context()
    try:
        window = _window(ctx, slug, range_key)
        slos = service.slo_definitions(ctx)
        oncall = load_oncall(ctx.settings.data_dir / "oncall")
    except SprintConfigError as exc:
        return errors.config_error_panel(exc.problems), [], None, []
    except SloConfigError as exc:
        return errors.config_error_panel(exc.problems), [], None, []
    try:
        at = as_of(ctx, window)
        with ctx.session() as session:
            budgets = budget_frame(session, slos, as_of=at)
            incidents = incidents_frame(session, window=window)
            postmortems = postmortems_frame(session)
            firing = alerts_frame(session, status="firing")
    except Exception as exc:
        log.exception("reliability query failed")
        panel = errors.store_error_panel(errors.store_error_message("Evaluating budgets", exc))
        return panel, [], None, []
    body = html.Div(
        [
            html.P(f"Error budgets as of {at:%Y-%m-%d %H:%M} UTC", className="qd-subtitle"),
            budget_table(budgets),
            html.H2("On-call: policy, open alerts, escalation, runbooks", className="qd-h"),
            oncall_panels(budgets, firing, oncall),
            html.H2("Incidents", className="qd-h"),
            incidents_table(incidents),
            html.H2("Postmortems", className="qd-h"),
            postmortems_list(postmortems),
        ]
    )
    options = [{"label": f"{s.service}/{s.slo}", "value": f"{s.service}/{s.slo}"} for s in slos]
    incident_options = [
        {"label": f"{k} — {t}", "value": k}
        for k, t in zip(incidents["incident_key"], incidents["title"], strict=True)
    ]
    # Open the chart on the SLO with the least budget left: the one worth looking at.
    ranked = budgets.sort_values("budget_remaining", na_position="last")
    selected = f"{ranked['service'].iloc[0]}/{ranked['slo'].iloc[0]}" if len(ranked) else None
    return body, options, selected, incident_options


@callback(
    Output(BURN, "figure"),
    Input(SLO, "value"),
    State(SPRINT_STORE, "data"),
    State(RANGE_STORE, "data"),
    prevent_initial_call=True,
)
def show_burn(selected: str | None, slug: str | None, range_key: str | None) -> go.Figure:
    """Chart the selected SLO's burn rates over the window, incidents shaded."""
    ctx = get_context()
    if not selected:
        return go.Figure()
    try:
        window = _window(ctx, slug, range_key)
        slo = next(s for s in service.slo_definitions(ctx) if f"{s.service}/{s.slo}" == selected)
        with ctx.session() as session:
            burn = burn_frame(session, slo, window=window)
            incidents = incidents_frame(session, window=window)
    except (StopIteration, SprintConfigError, SloConfigError):
        return go.Figure()
    incidents = incidents[incidents["service"] == slo.service]
    return burn_figure(burn, title=f"{selected}: burn rate (× budget)", incidents=incidents)


@callback(
    Output(TIMELINE, "children"),
    Input(INCIDENT, "value"),
    prevent_initial_call=True,
)
def show_timeline(incident_key: str | None) -> Any:
    """The unified timeline around the selected incident."""
    if not incident_key:
        return None
    ctx = get_context()
    with ctx.session() as session:
        frame = incidents_frame(
            session,
            window=Window(datetime(1970, 1, 2, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)),
        )
        row = frame[frame["incident_key"] == incident_key]
        if row.empty:
            return html.P(f"No incident {incident_key}.", className="qd-empty")
        started = row["started_at"].iloc[0]
        resolved = row["resolved_at"].iloc[0]
        end = resolved if isinstance(resolved, datetime) else utcnow()
        slos = [s for s in service.slo_definitions(ctx) if s.service == row["service"].iloc[0]]
        timeline = timeline_frame(
            session,
            window=Window(started - timedelta(hours=1), end + timedelta(minutes=30)),
            slos=slos,
        )
    return timeline_list(timeline)


def _actor(permission: str) -> tuple[str | None, str]:
    """The signed-in user allowed ``permission`` (checked server-side), else (None, why not)."""
    return service.authorized_user(permission)


@callback(
    Output(RESULT, "children"),
    Input(GENERATE, "n_clicks"),
    State(INCIDENT, "value"),
    State(ITEMS, "value"),
    State(OPEN_ISSUE, "value"),
    prevent_initial_call=True,
)
def generate(
    _clicks: int, incident_key: str | None, items: str | None, open_issue: list[str] | None
) -> Any:
    """Generate, optionally file, and record a postmortem for the selected incident."""
    ctx = get_context()
    user, refused = _actor(POSTMORTEM_PERMISSION)
    if user is None:
        return errors.refusal_panel(f"Refused: {refused}.")
    if not incident_key:
        return html.P("Choose an incident first.", className="qd-empty")
    cfg = service.config(ctx)
    github = None
    if open_issue:
        if not (cfg.postmortem_repo and cfg.postmortem_token):
            return errors.store_error_panel(
                "Opening an issue needs QUARTERDECK_EXPORTS__POSTMORTEM_REPO and "
                "QUARTERDECK_EXPORTS__POSTMORTEM_TOKEN."
            )
        github = {
            "api_url": cfg.github_api_url,
            "repo": cfg.postmortem_repo,
            "token": cfg.postmortem_token,
        }
    try:
        with ctx.session() as session:
            done = generate_postmortem(
                session,
                incident_key,
                slos=service.slo_definitions(ctx),
                generated_by=user,
                action_items=(items or "").splitlines(),
                now=utcnow(),
                github=github,
            )
    except PostmortemError as exc:
        return errors.store_error_panel(str(exc))
    return postmortem_result(done.markdown, done.issue_url)


@callback(
    Output(ADDED, "children"),
    Input(ADD, "n_clicks"),
    State(NEW_KEY, "value"),
    State(NEW_TITLE, "value"),
    State(NEW_SEVERITY, "value"),
    State(NEW_SERVICE, "value"),
    State(NEW_STARTED, "value"),
    State(NEW_RESOLVED, "value"),
    prevent_initial_call=True,
)
def add_incident(
    _clicks: int,
    key: str | None,
    title: str | None,
    severity: str | None,
    service_name: str | None,
    started: str | None,
    resolved: str | None,
) -> Any:
    """Record an incident entered by hand (through the incidents collector's validation)."""
    ctx = get_context()
    user, refused = _actor(INCIDENT_PERMISSION)
    if user is None:
        return errors.refusal_panel(f"Refused: {refused}.")
    item = {
        "key": key or None,
        "title": title or None,
        "severity": severity or "sev3",
        "service": service_name or None,
        "started_at": started or None,
        "resolved_at": resolved or None,
        "summary": f"entered in the console by {user}",
    }
    try:
        incident_source.transform_incident(item)
    except ValueError as exc:
        return errors.store_error_panel(f"Not recorded: {exc}")
    with ctx.session() as session:
        incident_source.ingest_incidents(session, [item], received_at=utcnow())
    return html.P(f"Recorded {str(key).upper()}.", className="qd-muted")
