"""Pure builders for Ingest health: collectors' last runs, dead-letter counts, recent rejects.

Frames come from `store.queries.ops`; timestamps are shown as ISO-8601 UTC with a `Z`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from dash import html

from console.components.html_attrs import data_attrs

RUN_STATUS_LABELS = {"ok": "OK", "partial": "PARTIAL", "failed": "FAILED", "running": "RUNNING"}
RUN_STATUS_CLASSES = {
    "ok": "qd-run--ok",
    "partial": "qd-run--partial",
    "failed": "qd-run--failed",
    "running": "qd-run--running",
}
PAYLOAD_PREVIEW_CHARS = 300
NO_RUNS = "No collector has run yet"
NO_REJECTS = "No rejects — every item received was stored"


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def format_timestamp(value: Any) -> str:
    """ISO-8601 UTC with a `Z` (naive values are UTC already, as SQLite returns them); else `—`."""
    if _missing(value):
        return "—"
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _int(value: Any) -> str:
    return "—" if _missing(value) else f"{int(value):,}"


def _text(value: Any) -> str:
    return "" if _missing(value) else str(value)


def payload_preview(payload: Any, limit: int = PAYLOAD_PREVIEW_CHARS) -> str:
    """The first ``limit`` characters of a stored payload, with `…` when cut."""
    text = _text(payload)
    return text if len(text) <= limit else text[:limit] + "…"


def run_status_badge(status: str) -> html.Span:
    """A run status as text and colour (`qd-badge qd-run--…`)."""
    return html.Span(
        RUN_STATUS_LABELS.get(status, status.upper()),
        className=f"qd-badge {RUN_STATUS_CLASSES.get(status, 'qd-run--running')}",
    )


def _empty(message: str) -> html.P:
    return html.P(message, className="qd-empty")


def _table(headers: list[str], rows: list[html.Tr], class_name: str) -> html.Table:
    return html.Table(
        [html.Thead(html.Tr([html.Th(h) for h in headers])), html.Tbody(rows)],
        className=f"qd-table {class_name}",
    )


def runs_table(runs: pd.DataFrame) -> html.Table | html.P:
    """The last run of every collector (columns of `last_runs_frame`)."""
    if runs.empty:
        return _empty(NO_RUNS)
    rows = [
        html.Tr(
            [
                html.Th(str(r["source"]), scope="row"),
                html.Td(run_status_badge(str(r["status"]))),
                html.Td(format_timestamp(r["started_at"]), className="qd-mono"),
                html.Td(format_timestamp(r["finished_at"]), className="qd-mono"),
                html.Td(_int(r["rows_stored"]), className="qd-num"),
                html.Td(_int(r["rows_duplicate"]), className="qd-num"),
                html.Td(_int(r["rows_rejected"]), className="qd-num"),
                html.Td(_int(r["runs"]), className="qd-num"),
                html.Td(_text(r["error"]), className="qd-run-error"),
            ],
            **data_attrs(source=str(r["source"])),
        )
        for r in runs.to_dict("records")
    ]
    headers = [
        "Source",
        "Status",
        "Started (UTC)",
        "Finished (UTC)",
        "Stored",
        "Duplicate",
        "Rejected",
        "Runs",
        "Error",
    ]
    return _table(headers, rows, "qd-runs")


def reject_counts_table(counts: pd.DataFrame) -> html.Table | html.P:
    """Dead letters per source (columns of `reject_counts_frame`), most first."""
    if counts.empty:
        return _empty(NO_REJECTS)
    ordered = counts.sort_values(["rejects", "source"], ascending=[False, True])
    rows = [
        html.Tr(
            [
                html.Th(str(r["source"]), scope="row"),
                html.Td(_int(r["rejects"]), className="qd-num"),
                html.Td(format_timestamp(r["last_at"]), className="qd-mono"),
            ],
            **data_attrs(source=str(r["source"])),
        )
        for r in ordered.to_dict("records")
    ]
    return _table(["Source", "Rejects", "Last reject (UTC)"], rows, "qd-reject-counts")


PAYLOADS_HIDDEN = "payload shown to sre, captain and admin"


def _payload_cell(payload: Any, *, show: bool) -> Any:
    if not show:
        return html.Span(PAYLOADS_HIDDEN, className="qd-muted")
    return html.Details(
        [html.Summary("payload"), html.Pre(payload_preview(payload), className="qd-payload")]
    )


def rejects_table(rejects: pd.DataFrame, *, show_payloads: bool = False) -> html.Table | html.P:
    """Recent dead letters as given (newest first); the payload preview (folded in a
    `<details>`) only when ``show_payloads`` — a sender's body may carry what only operators
    should read."""
    if rejects.empty:
        return _empty(NO_REJECTS)
    rows = [
        html.Tr(
            [
                html.Td(format_timestamp(r["received_at"]), className="qd-mono"),
                html.Td(str(r["source"])),
                html.Td(_int(r["item_index"]), className="qd-num"),
                html.Td(_text(r["reason"]), className="qd-reject-reason"),
                html.Td(_payload_cell(r["payload"], show=show_payloads)),
            ],
            **data_attrs(reject=str(r["id"])),
        )
        for r in rejects.to_dict("records")
    ]
    return _table(["Received (UTC)", "Source", "Item", "Reason", "Payload"], rows, "qd-rejects")


def ingest_health_view(
    *,
    runs: pd.DataFrame,
    counts: pd.DataFrame,
    rejects: pd.DataFrame,
    refreshed_at: datetime,
    show_payloads: bool = False,
) -> html.Div:
    """The Ingest health body: last runs, dead letters per source, recent rejects (payloads
    only for ``show_payloads``)."""
    dead_letters: list[Any] = [html.H2("Dead letters per source", className="qd-h2")]
    dead_letters.append(reject_counts_table(counts))
    sections: list[Any] = [
        html.P(f"Refreshed {format_timestamp(refreshed_at)}", className="qd-subtitle"),
        html.Section(
            [html.H2("Collectors — last run", className="qd-h2"), runs_table(runs)],
            className="qd-section",
        ),
        html.Section(dead_letters, className="qd-section"),
    ]
    if not rejects.empty:
        sections.append(
            html.Section(
                [
                    html.H2(
                        f"Recent rejects (newest first, {len(rejects)} shown)", className="qd-h2"
                    ),
                    rejects_table(rejects, show_payloads=show_payloads),
                ],
                className="qd-section",
            )
        )
    return html.Div(sections, className="qd-ingest")
