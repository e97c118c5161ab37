"""Egress: token + watermark coverage of served exports, refusals, 5xx by who answered,
per-tenant figures and both download limits (the numbers of `/api/egress/summary`).

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
from console.settings.egress import egress_config
from console.shell import BASELINE_RANGE, RANGE_STORE, SPRINT_STORE
from store.goals import SprintConfigError
from store.queries.egress import egress_summary, export_daily_frame

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
            cfg = egress_config(ctx.settings)
            figures = egress_summary(session, window=window, routes=cfg.export_routes)
            daily = export_daily_frame(session, window=window)
    except Exception as exc:
        log.exception("egress query failed")
        return errors.store_error_panel(errors.store_error_message("Reading export events", exc))
    label = "Baseline (before)" if baseline else "Sprint window"
    days = (window.end - window.start).total_seconds() / 86400
    limits = {
        "user": {"limit": cfg.rate_limit, "window_s": cfg.rate_window_s},
        "tenant": {"limit": cfg.tenant_rate_limit, "window_s": cfg.tenant_rate_window_s},
    }
    return egress_view(
        summary=figures.as_dict() | {"limits": limits},
        daily=daily,
        days=days,
        window_label=f"{label}: {window.start:%Y-%m-%d} → {window.end:%Y-%m-%d} (UTC)",
    )
