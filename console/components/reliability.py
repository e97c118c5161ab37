"""Pure builders for the Reliability page: error budgets, burn charts, incidents, timelines.

Frames in, Dash components out. Policy state is colour *and* text: NORMAL, FREEZE, NO DATA (grey,
never green).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from dash import dcc, html

from console.components.html_attrs import data_attrs
from store.slo import WINDOW_PAIRS, OncallService, format_duration

STATE_LABELS = {"normal": "NORMAL", "freeze": "FREEZE", "no_data": "NO DATA"}
STATE_CLASSES = {
    "normal": "qd-status--met",
    "freeze": "qd-status--missed",
    "no_data": "qd-status--no-data",
}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT


def format_burn(value: Any) -> str:
    """A burn rate as `2.3×`; missing → `—`."""
    return "—" if _missing(value) else f"{float(value):.2f}×"


def format_tte(seconds: Any) -> str:
    """Time to exhaustion in the largest sensible unit; not burning → `not burning`."""
    if _missing(seconds):
        return "not burning"
    s = float(seconds)
    if s <= 0:
        return "exhausted"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.1f} {unit}"
    return f"{s:.0f} s"


def state_badge(state: str) -> html.Span:
    return html.Span(
        STATE_LABELS.get(state, state.upper()),
        className=f"qd-badge {STATE_CLASSES.get(state, 'qd-status--no-data')}",
    )


def _table(headers: list[str], rows: list[Any], class_name: str) -> html.Table:
    return html.Table(
        [html.Thead(html.Tr([html.Th(h) for h in headers])), html.Tbody(rows)],
        className=f"qd-table {class_name}",
    )


def budget_table(frame: pd.DataFrame) -> html.Table | html.P:
    """One row per SLO (columns of `budget_frame`)."""
    if frame.empty:
        return html.P("No SLOs are defined (data/slos/*.yaml).", className="qd-empty")
    rows = []
    for r in frame.to_dict("records"):
        pairs = [
            f"{format_duration(p.long)} {format_burn(r[f'burn_{format_duration(p.long)}'])} / "
            f"{format_duration(p.short)} {format_burn(r[f'burn_{format_duration(p.short)}'])}"
            for p in WINDOW_PAIRS
        ]
        remaining = r["budget_remaining"]
        rows.append(
            html.Tr(
                [
                    html.Th(f"{r['service']}/{r['slo']}", scope="row"),
                    html.Td(
                        [
                            state_badge(str(r["state"])),
                            html.Div(str(r.get("policy") or ""), className="qd-muted"),
                        ]
                    ),
                    html.Td(f"{r['objective']:g} % / {r['window']}", className="qd-num"),
                    html.Td(
                        "—" if _missing(remaining) else f"{float(remaining) * 100:.1f} %",
                        className="qd-num",
                    ),
                    *[html.Td(p, className="qd-num") for p in pairs],
                    html.Td(format_tte(r["tte_s"]), className="qd-num"),
                    html.Td(r["alerts"] or "none"),
                    html.Td(r["reason"] or "", className="qd-check-reason"),
                ],
                **data_attrs(service=str(r["service"]), state=str(r["state"])),
            )
        )
    headers = [
        "SLO",
        "Policy",
        "Objective",
        "Budget left",
        *[f"{p.label} ({p.severity})" for p in WINDOW_PAIRS],
        "Exhausted in",
        "Firing",
        "Reason",
    ]
    return _table(headers, rows, "reliability-budgets")


def burn_figure(
    burn: pd.DataFrame, *, title: str, incidents: pd.DataFrame | None = None
) -> go.Figure:
    """1 h and 6 h burn rates over time with the page thresholds (14.4×, 6×) and incidents."""
    fig = go.Figure()
    if not burn.empty:
        for column, name, colour in (
            ("burn_1h", "burn 1 h", "#1f4e79"),
            ("burn_6h", "burn 6 h", "#6b21a8"),
            ("burn_5m", "burn 5 min", "#9ca3af"),
        ):
            fig.add_scatter(
                x=burn["ts"], y=burn[column], mode="lines", name=name, line={"color": colour}
            )
        for pair in WINDOW_PAIRS:
            if pair.severity == "page":
                fig.add_hline(
                    y=pair.factor,
                    line_dash="dash",
                    line_color="#b91c1c",
                    annotation_text=f"page {pair.label}",
                )
    for r in incidents.to_dict("records") if incidents is not None else []:
        end = r["resolved_at"] if not _missing(r["resolved_at"]) else burn["ts"].max()
        fig.add_vrect(
            x0=r["started_at"],
            x1=end,
            fillcolor="#fca5a5",
            opacity=0.25,
            line_width=0,
            annotation_text=str(r["incident_key"]),
        )
    fig.update_layout(
        height=320,
        margin={"l": 40, "r": 10, "t": 40, "b": 40},
        template="plotly_white",
        title=title,
        yaxis_title="× budget",
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def incidents_table(frame: pd.DataFrame) -> html.Table | html.P:
    """Incidents overlapping the window (columns of `incidents_frame`)."""
    if frame.empty:
        return html.P("No incidents in this window.", className="qd-empty")
    rows = [
        html.Tr(
            [
                html.Th(str(r["incident_key"]), scope="row"),
                html.Td(str(r["severity"])),
                html.Td(str(r["service"] or "—")),
                html.Td(str(r["title"])),
                html.Td(_when(r["started_at"]), className="qd-mono"),
                html.Td(_when(r["resolved_at"]), className="qd-mono"),
                html.Td(str(int(r["postmortems"])), className="qd-num"),
            ],
            **data_attrs(incident=str(r["incident_key"])),
        )
        for r in frame.to_dict("records")
    ]
    headers = ["Incident", "Severity", "Service", "Title", "Started", "Resolved", "Postmortems"]
    return _table(headers, rows, "reliability-incidents")


def _when(value: Any) -> str:
    if _missing(value):
        return "—"
    at = value if isinstance(value, datetime) else pd.Timestamp(value).to_pydatetime()
    return at.strftime("%Y-%m-%d %H:%M")


def timeline_list(frame: pd.DataFrame) -> html.Ol | html.P:
    """The unified timeline of an incident window."""
    if frame.empty:
        return html.P("Nothing stored happened in this window.", className="qd-empty")
    return html.Ol(
        [
            html.Li(
                [
                    html.Span(_when(r["at"]), className="qd-mono"),
                    " ",
                    html.Strong(str(r["kind"])),
                    f" {r['subject']}: {r['detail']}",
                ],
                **data_attrs(kind=str(r["kind"])),
            )
            for r in frame.to_dict("records")
        ],
        className="reliability-timeline",
    )


def postmortems_list(frame: pd.DataFrame) -> html.Ul | html.P:
    """Postmortems with issue links and open action items (columns of `postmortems_frame`)."""
    if frame.empty:
        return html.P("No postmortems yet.", className="qd-empty")
    items = []
    for r in frame.to_dict("records"):
        link: Any = (
            html.A(str(r["issue_url"]), href=str(r["issue_url"]), target="_blank")
            if r["issue_url"]
            else html.Span("no issue", className="qd-muted")
        )
        items.append(
            html.Li(
                [
                    html.Strong(str(r["incident_key"])),
                    f" — {_when(r['generated_at'])} by {r['generated_by']} — ",
                    link,
                    f" — {int(r['open_items'])} open of {len(r['action_items'] or [])} items",
                ]
            )
        )
    return html.Ul(items, className="reliability-postmortems")


def postmortem_result(markdown: str, issue_url: str | None) -> html.Div:
    """What the generator produced: the issue link and the rendered Markdown."""
    head: list[Any] = [html.Strong("Postmortem generated and recorded. ")]
    if issue_url:
        head += ["Issue: ", html.A(issue_url, href=issue_url, target="_blank")]
    return html.Div([html.P(head), dcc.Markdown(markdown, className="qd-section")])


def _pct(value: Any) -> str:
    return "—" if _missing(value) else f"{float(value) * 100:.1f} %"


def oncall_panels(
    budgets: pd.DataFrame, alerts: pd.DataFrame, oncall: list[OncallService]
) -> html.Div:
    """Per service: budget left, 1 h burn, policy state, open alerts, escalation map, runbook.

    ``budgets`` is `budget_frame`, ``alerts`` the firing rows of `alerts_frame`; the anchor
    `#runbook-<service>` is what the generated alerts' `runbook_url` opens.
    """
    by_service = {entry.service: entry for entry in oncall}
    services = sorted(set(budgets["service"]) | set(by_service))
    panels: list[Any] = [html.Span(id="runbook")]
    for service in services:
        rows = budgets[budgets["service"] == service]
        states = set(rows["state"])
        state = "freeze" if "freeze" in states else "no_data" if states == {"no_data"} else "normal"
        budget = rows["budget_remaining"].min() if len(rows) else None
        burn = rows["burn_1h"].max() if len(rows) else None
        firing = alerts[alerts["service"] == service] if len(alerts) else alerts
        entry = by_service.get(service)
        alert_items = [
            html.Li(
                f"{a['alertname']} ({a['severity'] or '-'}) since {_when(a['starts_at'])} "
                f"— {a['incident_key']}"
            )
            for a in firing.to_dict("records")
        ]
        escalation = (
            html.Ol(
                [
                    html.Li(
                        f"level {lvl.level} after {lvl.after}: {lvl.rotation} "
                        f"(receiver {lvl.receiver})"
                    )
                    for lvl in entry.escalation
                ],
                className="qd-escalation",
            )
            if entry
            else html.P("No escalation map: add data/oncall/<service>.yaml", className="qd-muted")
        )
        runbook = (
            html.Ol([html.Li(step) for step in entry.steps], className="qd-runbook")
            if entry and entry.steps
            else html.P("No runbook steps", className="qd-muted")
        )
        panels.append(
            html.Section(
                [
                    html.H3([service, " ", state_badge(state)], className="qd-h"),
                    html.P(
                        f"Budget left {_pct(budget)} · burn (1 h) {format_burn(burn)}",
                        className="qd-subtitle",
                    ),
                    html.H4("Open alerts"),
                    html.Ul(alert_items)
                    if alert_items
                    else html.P("No open alerts", className="qd-muted"),
                    html.H4("Escalation"),
                    escalation,
                    html.H4("Runbook"),
                    runbook,
                ],
                id=f"runbook-{service}",
                className="qd-oncall",
                **data_attrs(oncall_service=service, oncall_state=state),
            )
        )
    return html.Div(panels, className="qd-oncall-list")
