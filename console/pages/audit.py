"""Audit: every guarded action with requester, approver, reason, overrides, before/after and
verification, and the hash chain checked on each load."""

from __future__ import annotations

import logging
from typing import Any

import dash
from dash import Input, Output, dcc, html

from console.callbacks import callback
from console.components import actions as view
from console.components import errors
from console.runtime import get_context
from store.audit import verify_chain
from store.queries.actions import recent_audit

dash.register_page(__name__, path="/audit", name="Audit", title="Quarterdeck — Audit", order=85)

log = logging.getLogger(__name__)

INTERVAL = "audit-interval"
BODY = "audit-body"
REFRESH_MS = 30_000
ROWS_SHOWN = 200


def layout() -> html.Div:
    """Skeleton only; `show_audit` fills it on load and every 30 s."""
    return html.Div(
        [
            html.H1("Audit", className="qd-title"),
            dcc.Interval(id=INTERVAL, interval=REFRESH_MS),
            dcc.Loading(
                html.Div(html.P("Verifying the audit chain…", className="qd-muted"), id=BODY),
                type="dot",
                delay_show=500,
            ),
        ],
        className="qd-page qd-page--audit",
    )


@callback(Output(BODY, "children"), Input(INTERVAL, "n_intervals"))
def show_audit(_tick: int | None) -> Any:
    """Verify the chain and list the newest rows."""
    try:
        with get_context().session() as session:
            verdict = verify_chain(session).as_dict()
            rows = recent_audit(session, limit=ROWS_SHOWN)
    except Exception as exc:
        log.exception("audit query failed")
        return errors.store_error_panel(errors.store_error_message("Reading the audit", exc))
    return html.Div([view.chain_banner(verdict), view.audit_table(rows)])
