"""Pure builders for the Runbooks page: the runbooks with their steps and last runs, a run's
steps live (status, timings, messages), its RTO/RPO and the rollback offered after an abort.

Inputs are plain data: runbooks as `actions.runbooks.Runbook`, runs as
`store.queries.failover.runbook_runs` rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dash import dcc, html

from actions.runbooks import Runbook
from console.components.html_attrs import data_attrs

STATUS_CLASS = {
    "running": "qd-status--running",
    "paused": "qd-status--at_risk",
    "awaiting-approval": "qd-status--at_risk",
    "blocked": "qd-status--missed",
    "failed": "qd-status--missed",
    "aborted": "qd-status--missed",
    "completed": "qd-status--met",
}
STEP_MARK = {
    "done": "✓",
    "rehearsed": "✓ (rehearsed)",
    "skipped": "– skipped",
    "running": "…",
    "blocked": "✗ blocked",
    "failed": "✗ failed",
    "pending": "",
}


def _when(value: Any) -> str:
    if not isinstance(value, datetime):
        return "—"
    return f"{value:%Y-%m-%d %H:%M:%S} UTC"


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value / 60:.1f} min" if value >= 120 else f"{value:.1f} s"


def run_options(runs: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Dropdown options for the runs, newest first."""
    return [
        {
            "label": f"{r['run_id']} · {r['runbook']} · {r['mode']} · {r['status']}",
            "value": str(r["run_id"]),
        }
        for r in runs
    ]


def runbook_card(book: Runbook, runs: list[dict[str, Any]]) -> html.Div:
    """One runbook: targets, its steps in order and its last runs."""
    last = [r for r in runs if r["runbook"] == book.name][:5]
    return html.Div(
        [
            html.H3(f"{book.title}", className="qd-card-title"),
            html.P(
                f"{book.name} · {book.environment} · database {book.database or '—'} · "
                f"RPO target {_seconds(book.rpo_target_s)} · RTO target "
                f"{_seconds(book.rto_target_s)}",
                className="qd-muted",
            ),
            html.Ol([html.Li(f"{s.title} ({s.type})") for s in book.steps]),
            html.Table(
                [
                    html.Thead(
                        html.Tr(
                            [html.Th(h) for h in ("Run", "Mode", "Status", "Started", "RTO", "RPO")]
                        )
                    ),
                    html.Tbody(
                        [
                            html.Tr(
                                [
                                    html.Td(r["run_id"]),
                                    html.Td(r["mode"]),
                                    html.Td(
                                        r["status"], className=STATUS_CLASS.get(r["status"], "")
                                    ),
                                    html.Td(_when(r["started_at"])),
                                    html.Td(_seconds(r["rto_s"])),
                                    html.Td(_seconds(r["rpo_s"])),
                                ]
                            )
                            for r in last
                        ]
                        or [html.Tr(html.Td("no runs yet", colSpan=6, className="qd-muted"))]
                    ),
                ],
                className="qd-table runbooks-last-runs",
            ),
        ],
        className="qd-card runbooks-card",
        **data_attrs(runbook=book.name),
    )


def run_detail(run: dict[str, Any] | None, *, now: datetime) -> html.Div:
    """A run's steps live, with its status, clocks and rollback offer."""
    if run is None:
        return html.Div(html.P("No run selected.", className="qd-muted"), id="runbooks-run-detail")
    end = run["finished_at"] or now
    started = run["started_at"]
    took = (end - started).total_seconds() if isinstance(started, datetime) else None
    rows = []
    for i, step in enumerate(run["steps"]):
        current = i == run["current_step"] and run["status"] not in ("completed",)
        rows.append(
            html.Tr(
                [
                    html.Td(str(i + 1)),
                    html.Td(step.get("title") or step["id"]),
                    html.Td(step["type"]),
                    html.Td(STEP_MARK.get(step.get("status", "pending"), step.get("status", ""))),
                    html.Td(_seconds(step.get("duration_s"))),
                    html.Td(step.get("message") or ""),
                ],
                className="runbooks-step" + (" runbooks-step--current" if current else ""),
                **data_attrs(step=step["id"], status=step.get("status", "pending")),
            )
        )
    parts: list[Any] = [
        html.H3(f"Run {run['run_id']} — {run['runbook']} ({run['mode']})"),
        html.P(
            [
                html.Span(
                    run["status"],
                    className=f"qd-status {STATUS_CLASS.get(run['status'], '')}",
                    id="runbooks-run-status",
                ),
                f" · requested by {run['requested_by']} · {run['message']}",
            ]
        ),
        html.P(
            f"Elapsed {_seconds(took)} · RTO {_seconds(run['rto_s'])} · RPO "
            f"{_seconds(run['rpo_s'])} · started {_when(started)}",
            className="qd-muted",
        ),
    ]
    if run["failover_run_key"]:
        parts.append(
            dcc.Link(
                "Timeline on the Failover page", href=f"/failover?run={run['failover_run_key']}"
            )
        )
    parts.append(
        html.Table(
            [
                html.Thead(
                    html.Tr(
                        [html.Th(h) for h in ("#", "Step", "Type", "Status", "Took", "Message")]
                    )
                ),
                html.Tbody(rows),
            ],
            className="qd-table runbooks-steps",
        )
    )
    if run["rollback"]:
        parts.append(html.H4("Rollback offered"))
        parts.append(
            html.Ul(
                [
                    html.Li(
                        f"{o['step']}: {o['text']}"
                        + (f" — `{o['command']}`" if o.get("command") else "")
                    )
                    for o in run["rollback"]
                ],
                className="runbooks-rollback",
            )
        )
    return html.Div(parts, id="runbooks-run-detail", className="qd-card")


def runbooks_view(
    books: list[Runbook],
    errors: list[str],
    runs: list[dict[str, Any]],
    selected: dict[str, Any] | None,
    *,
    now: datetime,
) -> html.Div:
    """The whole body: the selected run live, validation problems, every runbook card."""
    parts: list[Any] = [run_detail(selected, now=now)]
    if errors:
        parts.append(
            html.Div(
                [html.H3("Runbooks that do not validate"), html.Ul([html.Li(e) for e in errors])],
                className="qd-error runbooks-errors",
            )
        )
    parts.extend(runbook_card(b, runs) for b in books)
    if not books and not errors:
        parts.append(html.P("No runbooks in data/runbooks.", className="qd-muted"))
    return html.Div(parts)
