"""Runbooks: the runbooks of data/runbooks with their last runs; start one in practice or
recovery mode, watch its steps live, pause, resume, abort, approve, or (admin) override.

The steps run in the background job (console/jobs/runbooks.py), so a reload shows the run where
it is. Thin callbacks: `show_runbooks` (read-only, every 2 s), `start_run` (permission
`runbook.start`) and `control` (pause/resume/abort/override: `runbook.control`; approve:
`runbook.approve`). The runner checks the role, the two-person rule and break-glass itself.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import dash
import flask
from dash import Input, Output, State, dcc, html

from console.auth.users import actor_of
from console.callbacks import callback
from console.components import errors
from console.components import runbooks as view
from console.jobs.runbooks import runbooks, runner
from console.runtime import get_context
from store.queries.failover import runbook_run, runbook_runs

dash.register_page(
    __name__, path="/runbooks", name="Runbooks", title="Quarterdeck — Runbooks", order=45
)

log = logging.getLogger(__name__)

INTERVAL = "runbooks-interval"
BODY = "runbooks-body"
BOOK = "runbooks-book"
MODE = "runbooks-mode"
REASON = "runbooks-reason"
START_BTN = "runbooks-start-btn"
START_RESULT = "runbooks-start-result"
RUN = "runbooks-run"
PAUSE_BTN = "runbooks-pause-btn"
RESUME_BTN = "runbooks-resume-btn"
ABORT_BTN = "runbooks-abort-btn"
APPROVE_BTN = "runbooks-approve-btn"
OVERRIDE_BTN = "runbooks-override-btn"
OVERRIDE_RULE = "runbooks-override-rule"
CONTROL_RESULT = "runbooks-control-result"
REFRESH_MS = 2_000
RUNS_SHOWN = 25


def layout(run: str | None = None, **_query: Any) -> html.Div:
    """Skeleton only; `show_runbooks` fills the lists and the body every 2 s."""
    return html.Div(
        [
            html.H1("Runbooks", className="qd-title"),
            dcc.Interval(id=INTERVAL, interval=REFRESH_MS),
            html.Div(
                [
                    dcc.Dropdown(id=BOOK, placeholder="runbook", style={"width": "260px"}),
                    dcc.RadioItems(
                        id=MODE,
                        options=[
                            {"label": "practice (changes nothing)", "value": "practice"},
                            {"label": "recovery (changes the world)", "value": "recovery"},
                        ],
                        value="practice",
                        inline=True,
                    ),
                    dcc.Input(id=REASON, placeholder="reason", debounce=True),
                    html.Button("Start run", id=START_BTN, className="qd-button"),
                    html.Span(id=START_RESULT, role="status", className="qd-muted"),
                ],
                className="qd-selectors runbooks-start",
            ),
            html.Div(
                [
                    dcc.Dropdown(id=RUN, value=run, placeholder="run", style={"width": "420px"}),
                    html.Button("Pause", id=PAUSE_BTN, className="qd-button"),
                    html.Button("Resume", id=RESUME_BTN, className="qd-button"),
                    html.Button("Abort", id=ABORT_BTN, className="qd-button"),
                    html.Button("Approve", id=APPROVE_BTN, className="qd-button"),
                    dcc.Input(id=OVERRIDE_RULE, placeholder="rule to override (admin)"),
                    html.Button("Override", id=OVERRIDE_BTN, className="qd-button"),
                    html.Span(id=CONTROL_RESULT, role="status", className="qd-muted"),
                ],
                className="qd-selectors runbooks-control",
            ),
            html.Div(html.P("Reading runbooks…", className="qd-muted"), id=BODY),
        ],
        className="qd-page qd-page--runbooks",
    )


@callback(
    Output(BODY, "children"),
    Output(BOOK, "options"),
    Output(RUN, "options"),
    Output(RUN, "value"),
    Input(INTERVAL, "n_intervals"),
    Input(START_RESULT, "children"),
    Input(CONTROL_RESULT, "children"),
    State(RUN, "value"),
)
def show_runbooks(
    _tick: Any, _started: Any, _controlled: Any, selected: str | None
) -> tuple[Any, ...]:
    """Read the runbooks and the recent runs; show the selected run (default: the newest)."""
    ctx = get_context()
    now = datetime.now(UTC)
    books, problems = runbooks(ctx.settings)
    try:
        with ctx.session() as session:
            runs = runbook_runs(session, limit=RUNS_SHOWN)
            chosen = selected or (runs[0]["run_id"] if runs else None)
            shown = runbook_run(session, chosen) if chosen else None
    except Exception as exc:
        log.exception("runbook query failed")
        panel = errors.store_error_panel(errors.store_error_message("Reading runbook runs", exc))
        return panel, dash.no_update, dash.no_update, dash.no_update
    body = view.runbooks_view(list(books.values()), problems, runs, shown, now=now)
    options = [{"label": b.title, "value": b.name} for b in books.values()]
    return body, options, view.run_options(runs), chosen


def _actor() -> Any:
    identity = getattr(flask.g, "identity", None)
    return actor_of(identity) if identity is not None else None


@callback(
    Output(START_RESULT, "children"),
    Input(START_BTN, "n_clicks"),
    State(BOOK, "value"),
    State(MODE, "value"),
    State(REASON, "value"),
    prevent_initial_call=True,
)
def start_run(_clicks: int | None, book: str | None, mode: str | None, reason: str | None) -> str:
    """Plan the run as a guarded action and start it (the runner checks everything)."""
    actor = _actor()
    if actor is None:
        return "Refused: sign in first"
    if not book:
        return "Pick a runbook first"
    ctx = get_context()
    with ctx.session() as session:
        result = runner(ctx.settings).start(
            session, actor, book, mode or "practice", reason=reason or "started from the console"
        )
    return ("" if result.ok else "Refused: ") + result.message


@callback(
    Output(CONTROL_RESULT, "children"),
    Input(PAUSE_BTN, "n_clicks"),
    Input(RESUME_BTN, "n_clicks"),
    Input(ABORT_BTN, "n_clicks"),
    Input(APPROVE_BTN, "n_clicks"),
    Input(OVERRIDE_BTN, "n_clicks"),
    State(RUN, "value"),
    State(OVERRIDE_RULE, "value"),
    State(REASON, "value"),
    prevent_initial_call=True,
)
def control(
    _pause: int | None,
    _resume: int | None,
    _abort: int | None,
    _approve: int | None,
    _override: int | None,
    run_id: str | None,
    rule: str | None,
    reason: str | None,
) -> str:
    """Pause, resume, abort, approve or override the selected run."""
    actor = _actor()
    if actor is None:
        return "Refused: sign in first"
    if not run_id:
        return "Pick a run first"
    trigger = dash.ctx.triggered_id
    ctx = get_context()
    engine = runner(ctx.settings)
    with ctx.session() as session:
        if trigger == PAUSE_BTN:
            result = engine.pause(session, actor, run_id, reason=reason or "")
        elif trigger == RESUME_BTN:
            result = engine.resume(session, actor, run_id, reason=reason or "")
        elif trigger == ABORT_BTN:
            result = engine.abort(session, actor, run_id, reason=reason or "")
        elif trigger == APPROVE_BTN:
            result = engine.approve(session, actor, run_id)
        elif trigger == OVERRIDE_BTN:
            result = engine.override(session, actor, run_id, rule or "", reason=reason or "")
        else:
            return "Nothing to do"
    return ("" if result.ok else "Refused: ") + result.message
