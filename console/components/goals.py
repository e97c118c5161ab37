"""Pure builders for the Overview: goal cards, the status summary and the promotion gates.

Everything here takes evaluated results (no session, no context) and returns Dash components, so it
is tested without a server. Status is always shown as colour *and* text; no data is grey.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import plotly.graph_objects as go
from dash import dcc, html

from console.components.html_attrs import aria_attrs, data_attrs
from store.goals import CheckResult, GateResult, TrendPoint, with_unit
from store.metrics import Window
from store.queries.failover import latest_run_key

STATUSES = ("met", "at_risk", "missed", "no_data")
STATUS_LABELS = {"met": "MET", "at_risk": "AT RISK", "missed": "MISSED", "no_data": "NO DATA"}
STATUS_CLASSES = {
    "met": "qd-status--met",
    "at_risk": "qd-status--at-risk",
    "missed": "qd-status--missed",
    "no_data": "qd-status--no-data",
}
OP_SYMBOLS = {"<": "<", "<=": "≤", ">": ">", ">=": "≥", "==": "="}
# Names of area pages that may not be registered yet (later issues add them).
AREA_NAMES = {
    "/ci": "CI",
    "/policy": "Policy",
    "/traffic": "Traffic",
    "/failover": "Failover",
    "/egress": "Egress",
    "/reliability": "Reliability",
    "/evidence": "Evidence",
    "/audit": "Audit",
}
TREND_LABELS = {
    "improving": "improving",
    "worsening": "worsening",
    "flat": "flat",
    "unknown": "not enough daily values",
}
SPARK_LINE = "#1f4e79"
SPARK_TARGET = "#6b7280"


@dataclass(frozen=True)
class PageRef:
    """A registered page a goal can link to."""

    name: str
    href: str


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def format_value(value: float | None, unit: str) -> str:
    """Format a value in its unit as the reasons do (`13.8 min`, `99.4 %`, `0`); None → `—`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return with_unit(value, unit)


def format_target(target: Mapping[str, Any]) -> str:
    """Format a target dict (op, value, unit) as `< 15 min`, `≥ 100 %`, `= 0`."""
    op = OP_SYMBOLS.get(str(target["op"]), str(target["op"]))
    return f"{op} {format_value(float(target['value']), str(target['unit']))}"


def format_utc(value: datetime) -> str:
    """Format an aware datetime as `2025-11-10 00:00 UTC`."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# --------------------------------------------------------------------------------------------
# Status
# --------------------------------------------------------------------------------------------


def status_badge(status: str) -> html.Span:
    """A status as text and colour (`qd-badge qd-status--…`)."""
    return html.Span(
        STATUS_LABELS.get(status, status.upper()),
        className=f"qd-badge {STATUS_CLASSES.get(status, STATUS_CLASSES['no_data'])}",
    )


def status_summary(results: Sequence[CheckResult]) -> html.Div:
    """The strip of goal counts per status."""
    counts: Counter[str] = Counter(r.status for r in results)
    items: list[Any] = [
        html.Div(
            [html.Span(str(counts.get(s, 0)), className="qd-summary-count"), STATUS_LABELS[s]],
            className=f"qd-summary-item {STATUS_CLASSES[s]}",
            **data_attrs(status=s),
        )
        for s in STATUSES
    ]
    items.append(
        html.Div(f"{len(results)} goals", className="qd-summary-total"),
    )
    return html.Div(items, className="qd-summary", role="status")


# --------------------------------------------------------------------------------------------
# Goal cards
# --------------------------------------------------------------------------------------------


def sparkline_figure(trend: Sequence[TrendPoint], target_value: float) -> go.Figure:
    """A small line of the daily values with the target as a dashed line."""
    days = [p.day for p in trend]
    values = [p.value for p in trend]
    fig = go.Figure(
        [
            go.Scatter(
                x=[days[0], days[-1]] if days else [],
                y=[target_value, target_value],
                mode="lines",
                line={"color": SPARK_TARGET, "dash": "dash", "width": 1},
                hoverinfo="skip",
                name="target",
            ),
            go.Scatter(
                x=days,
                y=values,
                mode="lines+markers",
                line={"color": SPARK_LINE, "width": 2},
                marker={"size": 4},
                connectgaps=False,
                name="daily",
            ),
        ]
    )
    fig.update_layout(
        height=56,
        margin={"l": 2, "r": 2, "t": 4, "b": 4},
        showlegend=False,
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        xaxis={"visible": False, "fixedrange": True},
        yaxis={"visible": False, "fixedrange": True},
    )
    return fig


def sparkline(result: CheckResult) -> html.Div | dcc.Graph:
    """The goal's daily trend, or a note when there is no daily value at all."""
    if not any(p.value is not None for p in result.trend):
        return html.Div("No daily values in this window", className="qd-sparkline-empty")
    return dcc.Graph(
        figure=sparkline_figure(result.trend, float(result.target["value"])),
        config={"displayModeBar": False, "staticPlot": True, "responsive": True},
        className="qd-sparkline",
        style={"height": "56px"},
    )


def area_link(path: str, pages: Mapping[str, PageRef]) -> html.Span | dcc.Link:
    """Link the goal's area page when it is registered, else name it as plain text."""
    page = pages.get(path)
    if page is not None:
        return dcc.Link(f"{page.name} →", href=page.href, className="qd-area-link")
    name = AREA_NAMES.get(path, path.strip("/").replace("-", " ").capitalize() or path)
    return html.Span(
        f"{name} page", className="qd-area-text", title="This page is not available yet"
    )


RUN_METRICS = ("failover.rto", "failover.rpo")


def goal_link(result: CheckResult, pages: Mapping[str, PageRef]) -> html.Span | dcc.Link:
    """The area link; a failover RTO/RPO card names its run and opens it (`?run=<key>`)."""
    key = latest_run_key(result.detail) if result.metric in RUN_METRICS else None
    page = pages.get(result.page)
    if key is None or page is None:
        return area_link(result.page, pages)
    return dcc.Link(
        f"{page.name}: {key} →",
        href=f"{page.href}?run={quote(key)}",
        className="qd-area-link qd-run-link",
        title="The run this number comes from",
    )


def goal_card(result: CheckResult, *, pages: Mapping[str, PageRef]) -> html.Article:
    """One goal: status, value against target, samples, daily trend, reason, definition, area."""
    status_class = STATUS_CLASSES.get(result.status, STATUS_CLASSES["no_data"])
    owner = " · ".join(x for x in (result.epic, result.owner) if x)
    samples = f"{result.samples} sample" + ("" if result.samples == 1 else "s")
    measured: list[Any] = [html.Code(result.metric), f" · aggregation {result.aggregation}"]
    if result.detail:
        measured.append(f" · {result.detail}")
    definition = [
        html.Summary("Definition"),
        html.P(result.definition),
        html.P(measured, className="qd-goal-metric"),
    ]
    return html.Article(
        [
            html.Div(
                [status_badge(result.status), html.Span(owner, className="qd-goal-owner")],
                className="qd-goal-head",
            ),
            html.H3(result.title, className="qd-goal-title"),
            html.Div(
                [
                    html.Span(format_value(result.value, result.unit), className="qd-goal-value"),
                    html.Span(
                        ["target ", html.B(format_target(result.target))],
                        className="qd-goal-target",
                    ),
                    (
                        dcc.Link(
                            f"{samples} →",
                            href=result.rows_view,
                            className="qd-goal-samples qd-rows-link",
                            title="The rows behind this number",
                        )
                        if result.rows_view
                        else html.Span(samples, className="qd-goal-samples")
                    ),
                ],
                className="qd-goal-figures",
            ),
            sparkline(result),
            html.Div(
                f"Trend: {TREND_LABELS.get(result.trend_direction, result.trend_direction)}",
                className=f"qd-goal-trend qd-trend--{result.trend_direction}",
            ),
            html.P(result.reason, className="qd-goal-reason"),
            html.Div(
                [
                    html.Details(definition, className="qd-goal-definition"),
                    goal_link(result, pages),
                ],
                className="qd-goal-foot",
            ),
        ],
        className=f"qd-goal {status_class}",
        **data_attrs(goal=result.id, status=result.status),
    )


# --------------------------------------------------------------------------------------------
# Promotion gates
# --------------------------------------------------------------------------------------------


def _check_item(check: CheckResult) -> html.Li:
    children: list[Any] = [status_badge(check.status), " ", html.Span(check.title)]
    if check.status != "met":
        children.append(html.Div(check.reason, className="qd-check-reason"))
    return html.Li(children, className="qd-check", **data_attrs(check=check.id))


def _check_list(checks: Sequence[CheckResult], empty: str) -> html.Ul | html.Span:
    if not checks:
        return html.Span(empty, className="qd-muted")
    return html.Ul([_check_item(c) for c in checks], className="qd-checks")


def gate_badge(ready: bool) -> html.Span:
    """READY (green) or BLOCKED (red)."""
    if ready:
        return html.Span("READY", className="qd-badge qd-gate--ready")
    return html.Span("BLOCKED", className="qd-badge qd-gate--blocked")


def gates_table(gates: Sequence[GateResult]) -> html.Table | html.P:
    """The promotion gates in order: action, readiness, preconditions, verification, rollback."""
    if not gates:
        return html.P("This sprint defines no promotion gates.", className="qd-muted")
    header = html.Thead(
        html.Tr(
            [
                html.Th("Stage"),
                html.Th("Action"),
                html.Th("Gate"),
                html.Th("Preconditions"),
                html.Th("Verification after promotion"),
                html.Th("Rollback"),
            ]
        )
    )
    rows = [
        html.Tr(
            [
                html.Th(gate.stage, scope="row", className="qd-gate-stage"),
                html.Td(gate.action or "—"),
                html.Td(gate_badge(gate.ready)),
                html.Td(_check_list(gate.preconditions, "none")),
                html.Td(_check_list(gate.verification, "none")),
                html.Td(gate.rollback or "—"),
            ],
            **data_attrs(stage=gate.stage),
        )
        for gate in gates
    ]
    return html.Table([header, html.Tbody(rows)], className="qd-table qd-gates")


# --------------------------------------------------------------------------------------------
# The board and its error states
# --------------------------------------------------------------------------------------------


def overview_board(
    *,
    sprint_title: str,
    window: Window,
    range_label: str,
    goals: Sequence[CheckResult],
    gates: Sequence[GateResult],
    pages: Mapping[str, PageRef],
    evaluated_at: datetime,
) -> html.Div:
    """The whole Overview body: heading, status summary, goal cards, promotion gates."""
    flow = " → ".join(g.stage for g in gates) if gates else ""
    return html.Div(
        [
            html.Div(
                [
                    html.H1(sprint_title, className="qd-title"),
                    html.P(
                        f"{range_label}: {format_utc(window.start)} → {format_utc(window.end)}"
                        f" · evaluated {format_utc(evaluated_at)}",
                        className="qd-subtitle",
                    ),
                ],
                className="qd-board-head",
            ),
            status_summary(goals),
            html.Section(
                [goal_card(g, pages=pages) for g in goals]
                or [html.P("This sprint defines no goals.", className="qd-muted")],
                className="qd-goals",
                **aria_attrs(label="Goals"),
            ),
            html.Section(
                [
                    html.H2("Promotion gates" + (f" ({flow})" if flow else ""), className="qd-h2"),
                    gates_table(gates),
                ],
                className="qd-section",
            ),
        ],
        className="qd-board",
    )
