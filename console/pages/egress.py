"""Egress: token and watermark coverage of export downloads, 429 vs 5xx, per-tenant rates.

Takes the sprint and time range from the shell's stores; one read per selection change.
"""

from __future__ import annotations

import logging

import dash
from dash import Input, Output, dcc, html

from console.callbacks import callback
from console.components import errors
from console.components.egress import egress_view
from console.runtime import get_context
from console.shell import BASELINE_RANGE, RANGE_STORE, SPRINT_STORE
from store.goals import SprintConfigError
from store.queries.egress import export_daily_frame, export_summary_frame, uncovered_frame

dash.register_page(__name__, path="/egress", name="Egress", title="Quarterdeck — Egress", order=60)

log = logging.getLogger(__name__)

BODY = "egress-body"


def layout() -> html.Div:
    """Skeleton only; `show_egress` fills it."""
    return html.Div(
        [
            html.H1("Egress controls", className="qd-title"),
            dcc.Loading(
                html.Div(html.P("Reading export events…", className="qd-muted"), id=BODY),
                type="dot",
                delay_show=200,
            ),
        ],
        className="qd-page qd-page--egress",
    )


@callback(Output(BODY, "children"), Input(SPRINT_STORE, "data"), Input(RANGE_STORE, "data"))
def show_egress(slug: str | None, range_key: str | None) -> html.Div:
    """Read the export summary, daily outcomes and uncovered routes for the selected window."""
    ctx = get_context()
    try:
        sprint = ctx.sprint(slug or ctx.settings.default_sprint)
    except SprintConfigError as exc:
        return errors.config_error_panel(exc.problems)
    baseline = range_key == BASELINE_RANGE
    window = sprint.baseline_window() if baseline else sprint.window.window()
    try:
        with ctx.session() as session:
            summary = export_summary_frame(session, window=window)
            daily = export_daily_frame(session, window=window)
            uncovered = uncovered_frame(session, window=window)
    except Exception as exc:
        log.exception("egress query failed")
        return errors.store_error_panel(errors.store_error_message("Reading export events", exc))
    label = "Baseline (before)" if baseline else "Sprint window"
    days = (window.end - window.start).total_seconds() / 86400
    return egress_view(
        summary=summary,
        daily=daily,
        uncovered=uncovered,
        days=days,
        window_label=f"{label}: {window.start:%Y-%m-%d} → {window.end:%Y-%m-%d} (UTC)",
    )
