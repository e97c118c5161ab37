"""Traffic: configured weight vs observed share per region, 429 vs 5xx per ingress, health checks.

The window is the shell's range (sprint or baseline) or the last hour / day; long windows read
hourly rollups. Refreshed every 15 s (one traffic step); "stale since …" when samples stop.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import dash
from dash import Input, Output, dcc, html

from console.callbacks import callback
from console.components import errors
from console.components import traffic as view
from console.runtime import get_context
from console.shell import BASELINE_RANGE, RANGE_STORE, SPRINT_STORE
from store.goals import SprintConfigError
from store.metrics import Window
from store.queries.traffic import (
    annotations_frame,
    health_checks_frame,
    ingress_rates_frame,
    last_sync_error,
    latest_sample_at,
    region_series_frame,
    region_share_frame,
)

dash.register_page(
    __name__, path="/traffic", name="Traffic", title="Quarterdeck — Traffic", order=30
)

log = logging.getLogger(__name__)

WINDOW = "traffic-window"
INTERVAL = "traffic-interval"
BODY = "traffic-body"
REFRESH_MS = 15_000
STALE_AFTER_S = 120.0
WINDOW_OPTIONS = [
    {"label": "Shell range", "value": "range"},
    {"label": "Last 24 h", "value": "day"},
    {"label": "Last hour", "value": "hour"},
]


def layout() -> html.Div:
    """Skeleton only; `show_traffic` fills it."""
    return html.Div(
        [
            html.H1("Traffic", className="qd-title"),
            dcc.RadioItems(
                id=WINDOW, options=WINDOW_OPTIONS, value="range", inline=True, className="qd-range"
            ),
            dcc.Interval(id=INTERVAL, interval=REFRESH_MS),
            dcc.Loading(
                html.Div(html.P("Reading traffic…", className="qd-muted"), id=BODY),
                type="dot",
                delay_show=500,
            ),
        ],
        className="qd-page qd-page--traffic",
    )


def pick_window(
    choice: str | None, slug: str | None, range_key: str | None, now: datetime
) -> tuple[Window, str]:
    """The window to show and its label (raises SprintConfigError for a bad sprint file)."""
    if choice == "hour":
        return Window(now - timedelta(hours=1), now), "Last hour"
    if choice == "day":
        return Window(now - timedelta(days=1), now), "Last 24 hours"
    ctx = get_context()
    sprint = ctx.sprint(slug or ctx.settings.default_sprint)
    if range_key == BASELINE_RANGE:
        window, label = sprint.baseline_window(), "Baseline (before)"
    else:
        window, label = sprint.window.window(), "Sprint window"
    start, end = (w.strftime("%Y-%m-%d") for w in (window.start, window.end))
    return window, f"{label}: {start} → {end} (hourly rollups)"


@callback(
    Output(BODY, "children"),
    Input(WINDOW, "value"),
    Input(INTERVAL, "n_intervals"),
    Input(SPRINT_STORE, "data"),
    Input(RANGE_STORE, "data"),
)
def show_traffic(
    choice: str | None, _tick: int | None, slug: str | None, range_key: str | None
) -> html.Div:
    """Read the window's traffic and build the page body."""
    now = datetime.now(UTC)
    try:
        window, label = pick_window(choice, slug, range_key, now)
    except SprintConfigError as exc:
        return errors.config_error_panel(exc.problems)
    try:
        with get_context().session() as session:
            rates = ingress_rates_frame(session, window=window)
            shares = region_share_frame(session, window=window, rates=rates)
            series = region_series_frame(session, window=window)
            notes = annotations_frame(session, window=window)
            checks = health_checks_frame(session, as_of=min(now, window.end))
            latest = latest_sample_at(session)
            error = last_sync_error(session)
    except Exception as exc:  # a failing query shows a one-line panel, not a broken page
        log.exception("traffic query failed")
        return errors.store_error_panel(errors.store_error_message("Reading traffic", exc))
    return view.traffic_view(
        window_label=label,
        shares=shares,
        rates=rates,
        series=series,
        annotations=notes,
        checks=checks,
        freshness=view.freshness_line(latest, now, stale_after_s=STALE_AFTER_S, last_error=error),
    )
