"""Ingest health: every collector's last run and the dead letters, refreshed every 10 s."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import dash
import flask
from dash import Input, Output, dcc, html

from console.callbacks import callback
from console.components import errors
from console.components.ingest import ingest_health_view
from console.runtime import get_context
from store.queries.ops import last_runs_frame, reject_counts_frame, rejects_frame

dash.register_page(
    __name__,
    path="/ingest-health",
    name="Ingest health",
    title="Quarterdeck — Ingest health",
    order=90,
)

log = logging.getLogger(__name__)

INTERVAL = "ingest-health-interval"
BODY = "ingest-health-body"
REFRESH_MS = 10_000
REJECTS_SHOWN = 200
PAYLOAD_ROLES = ("sre", "captain")  # (admin holds every role) — docs/security.md


def layout() -> html.Div:
    """Skeleton only; `show_ingest_health` fills it on load and every 10 s."""
    return html.Div(
        [
            html.H1("Ingest health", className="qd-title"),
            dcc.Interval(id=INTERVAL, interval=REFRESH_MS),
            # A delay keeps the 10 s refresh from flashing a spinner on every tick.
            dcc.Loading(
                html.Div(html.P("Reading collector runs…", className="qd-muted"), id=BODY),
                type="dot",
                delay_show=500,
            ),
        ],
        className="qd-page qd-page--ingest-health",
    )


@callback(Output(BODY, "children"), Input(INTERVAL, "n_intervals"))
def show_ingest_health(_tick: int | None) -> html.Div:
    """Read the last runs and dead letters and build the page body."""
    try:
        with get_context().session() as session:
            runs = last_runs_frame(session)
            counts = reject_counts_frame(session)
            rejects = rejects_frame(session, limit=REJECTS_SHOWN)
    except Exception as exc:  # a failing query shows a one-line panel, not a broken page
        log.exception("ingest health query failed")
        return errors.store_error_panel(errors.store_error_message("Reading ingest health", exc))
    identity = getattr(flask.g, "identity", None) if flask.has_app_context() else None
    operator = identity is not None and any(identity.has(r) for r in PAYLOAD_ROLES)
    return ingest_health_view(
        runs=runs,
        counts=counts,
        rejects=rejects,
        refreshed_at=datetime.now(UTC),
        show_payloads=operator,
    )
