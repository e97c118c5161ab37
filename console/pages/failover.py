"""Failover (live): the current or last run as a phase timeline, RTO clock, RPO, lag, history.

Refreshes every 2 s with cheap queries (one run, its events, a bounded lag window, the last 50
runs). `?run=<key>` shows a past run. The drill buttons write marks through the failover
collector, like `quarterdeck failover drill …`; they need the `sre` role (checked on the server
by the permission table, in demo mode too).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import dash
from dash import Input, Output, State, dcc, html

from collectors import failover as source
from console.callbacks import callback
from console.components import errors
from console.components import failover as view
from console.components.ingest import format_timestamp
from console.runtime import get_context
from store.ingest import utcnow
from store.models import FAILOVER_PHASES
from store.queries.failover import freshness, get_run, list_runs, live_run

dash.register_page(
    __name__, path="/failover", name="Failover", title="Quarterdeck — Failover", order=40
)

log = logging.getLogger(__name__)

INTERVAL = "failover-interval"
BODY = "failover-body"
SELECTED = "failover-selected"
LAST_OK = "failover-last-ok"
DRILL_START = "failover-drill-start"
DRILL_PHASE = "failover-drill-phase"
DRILL_MARK = "failover-drill-mark"
DRILL_END = "failover-drill-end"
DRILL_RESULT = "failover-drill-result"
REFRESH_MS = 2_000
HISTORY_ROWS = 50
DRILL_PERMISSION = "drill.run"  # role sre (or admin): console.auth.permissions


def layout(run: str | None = None, **_query: Any) -> html.Div:
    """Skeleton only (``run`` comes from `?run=`); `show_failover` fills it every 2 s."""
    return html.Div(
        [
            html.H1("Failover", className="qd-title"),
            dcc.Store(id=SELECTED, data=run),
            dcc.Store(id=LAST_OK),
            dcc.Interval(id=INTERVAL, interval=REFRESH_MS),
            html.Div(
                [
                    html.Button("Start drill", id=DRILL_START, className="qd-button"),
                    dcc.Dropdown(
                        id=DRILL_PHASE,
                        options=[{"label": p, "value": p} for p in FAILOVER_PHASES[1:]],
                        value="promoted",
                        clearable=False,
                        style={"width": "180px", "display": "inline-block"},
                    ),
                    html.Button("Mark phase", id=DRILL_MARK, className="qd-button"),
                    html.Button("End drill", id=DRILL_END, className="qd-button"),
                    html.Span(id=DRILL_RESULT, className="qd-muted", role="status"),
                ],
                className="failover-drill qd-selectors",
            ),
            html.Div(html.P("Reading failover runs…", className="qd-muted"), id=BODY),
        ],
        className="qd-page qd-page--failover",
    )


@callback(
    Output(BODY, "children"),
    Output(LAST_OK, "data"),
    Input(INTERVAL, "n_intervals"),
    Input(DRILL_RESULT, "children"),
    State(SELECTED, "data"),
    State(LAST_OK, "data"),
)
def show_failover(
    _tick: int | None, _result: Any, selected: str | None, last_ok: str | None
) -> tuple[html.Div, Any]:
    """Read the shown run, the history and freshness; build the body."""
    ctx = get_context()
    now = datetime.now(UTC)
    env = ctx.settings.failover.environment
    try:
        with ctx.session() as session:
            detail = get_run(session, selected, now=now) if selected else None
            live = detail is None
            if live:
                detail = live_run(session, now=now)
            runs = list_runs(session, limit=HISTORY_ROWS)
            fresh = freshness(session, environment=detail.environment if detail else env)
    except Exception as exc:  # the store is unreachable: say since when, never freeze a number
        log.exception("failover query failed")
        since = format_timestamp(last_ok) if last_ok else "the page was opened"
        message = errors.store_error_message("Reading failover runs", exc)
        return (
            html.Div(
                [
                    html.P(f"Stale since {since}", className="qd-error failover-freshness"),
                    errors.store_error_panel(message),
                ]
            ),
            dash.no_update,
        )
    unknown = selected if selected and live else None
    body = view.failover_view(detail, runs, fresh, now=now, live=live, unknown=unknown)
    return body, now.isoformat()


def _may_drill() -> tuple[bool, str]:
    """Whether the requester may mark drills: the `sre` role (or admin), in every mode.

    Demo mode signs nobody in, so a signed-out visitor of the demo reads but never drills.
    """
    from console.auth.permissions import authorize, current_identity

    identity = current_identity()
    refusal = authorize(identity, DRILL_PERMISSION)
    if refusal is not None or identity is None:
        return False, refusal.message if refusal is not None else "sign in first"
    return True, identity.user


@callback(
    Output(DRILL_RESULT, "children"),
    Input(DRILL_START, "n_clicks"),
    Input(DRILL_MARK, "n_clicks"),
    Input(DRILL_END, "n_clicks"),
    State(DRILL_PHASE, "value"),
    prevent_initial_call=True,
)
def drill_action(_start: int | None, _mark: int | None, _end: int | None, phase: str | None) -> str:
    """Start, mark or end the environment's drill (role checked server-side)."""
    allowed, who = _may_drill()
    if not allowed:
        return f"Refused: {who}"
    ctx = get_context()
    env = ctx.settings.failover.environment
    trigger = dash.ctx.triggered_id
    now = utcnow()
    with ctx.session() as session:
        run = source.current_run(session, env)
        if trigger == DRILL_START:
            if run is not None:
                return f"Run {run.run_key} is still open"
            key = source.start_run(
                session,
                environment=env,
                at=now,
                kind="drill",
                source="manual",
                notes=f"drill started from the console by {who}",
            )
            return f"Started {key}"
        if run is None:
            return f"No open run in {env}: start a drill first"
        mark = "complete" if trigger == DRILL_END else (phase or "promoted")
        source.mark_phase(
            session,
            run_key=run.run_key,
            phase=mark,
            at=now,
            source="manual",
            message=f"{mark} marked from the console by {who}",
        )
        return f"{run.run_key}: {mark} at {format_timestamp(now)}"
