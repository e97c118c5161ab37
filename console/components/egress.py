"""Pure builders for the Egress page: coverage of served exports, refusals by reason, 5xx by
who answered, per-tenant figures and limits, undeclared routes.

Data in (`EgressSummary.as_dict()`, the daily frame), Dash components out (no session, no
context). Coverage below 100 % and any 5xx are missed; the limiter answering 503 is called out
with the fix; 5xx reads "no data" until the limiter's log is imported; never green on nothing.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
from dash import dcc, html

from console.components.html_attrs import data_attrs

STATUS_CLASS = {
    "met": "qd-status--met",
    "missed": "qd-status--missed",
    "no_data": "qd-status--no-data",
}
STATUS_LABEL = {"met": "MET", "missed": "MISSED", "no_data": "NO DATA"}


def _badge(status: str) -> html.Span:
    return html.Span(STATUS_LABEL[status], className=f"qd-badge {STATUS_CLASS[status]}")


def _stat(key: str, title: str, value: str, status: str | None, note: str) -> html.Div:
    head: list[Any] = [html.Span(title, className="qd-goal-title")]
    if status is not None:
        head.append(_badge(status))
    return html.Div(
        [
            html.Div(head),
            html.Div(value, className="qd-goal-value"),
            html.Div(note, className="qd-muted"),
        ],
        className="qd-goal",
        **data_attrs(stat=key),
    )


def egress_stats(summary: dict[str, Any]) -> html.Div:
    """Coverage of served exports, refusals, 429, 5xx by who answered (`EgressSummary.as_dict`)."""
    served, requests = int(summary["served"]), int(summary["requests"])
    if not requests:
        return html.Div(
            _stat("coverage", "Token + watermark coverage", "—", "no_data", "no export events"),
            className="qd-goals",
        )
    covered = int(summary["covered"])
    refused = int(summary["refused_total"])
    s5 = summary["status_5xx"]
    proxy = summary["proxy_log"]
    if not proxy["in"]:
        r5xx_status, r5xx_note = (
            "no_data",
            ("the limiter's access log for this window is not imported: its 429/503 are unknown"),
        )
    else:
        r5xx_status = "met" if s5["total"] == 0 else "missed"
        r5xx_note = f"limiter {s5['limiter']}, application {s5['application']}"
        if summary["limiter_503"]:
            r5xx_note += (
                f" — the limiter answered 503 {summary['limiter_503']}×: {summary['limiter_fix']}"
            )
    return html.Div(
        [
            _stat(
                "coverage",
                "Token + watermark on served exports (target 100 %)",
                f"{covered / served * 100:.2f} %" if served else "—",
                ("met" if covered == served else "missed") if served else "no_data",
                f"{served - covered} of {served:,} served exports uncovered"
                + (
                    f"; {len(summary['uncovered_routes'])} undeclared route(s)"
                    if summary["uncovered_routes"]
                    else ""
                ),
            ),
            _stat(
                "refused",
                "Refused attempts (counted apart)",
                f"{refused:,}",
                None,
                ", ".join(f"{k} {v:,}" for k, v in summary["refused"].items()) or "none",
            ),
            _stat(
                "r429",
                "Answered 429",
                f"{int(summary['status_429']):,}",
                None,
                f"{int(summary['status_429']) / requests:.2%} of requests",
            ),
            _stat(
                "r5xx",
                "Downloads answered 5xx (target 0)",
                f"{int(s5['total']):,}",
                r5xx_status,
                r5xx_note,
            ),
        ],
        className="qd-goals",
    )


def _table(headers: list[str], rows: list[Any], class_name: str) -> html.Table:
    return html.Table(
        [html.Thead(html.Tr([html.Th(h) for h in headers])), html.Tbody(rows)],
        className=f"qd-table {class_name}",
    )


def limits_note(limits: dict[str, Any]) -> html.P:
    """The per-user and per-tenant download limits in force (both answer 429 + Retry-After)."""
    user, tenant = limits["user"], limits["tenant"]
    return html.P(
        f"Download limits: {user['limit']} per user per {user['window_s']} s and "
        f"{tenant['limit']} per tenant per {tenant['window_s']} s (429 with Retry-After).",
        className="qd-muted",
        **data_attrs(stat="limits"),
    )


def tenant_table(tenants: list[dict[str, Any]], days: float) -> html.Table | html.P:
    """Per tenant: requests, served, coverage, refusals by limit, 5xx, volume, downloads/day."""
    if not tenants:
        return html.P("No export events in this window.", className="qd-empty")
    rows = [
        html.Tr(
            [
                html.Th(str(t["tenant"]), scope="row"),
                html.Td(f"{t['requests']:,}", className="qd-num"),
                html.Td(f"{t['served']:,}", className="qd-num"),
                html.Td(
                    "—" if t["coverage"] is None else f"{t['coverage']:.2%}", className="qd-num"
                ),
                html.Td(f"{t['rate_limited_user']:,}", className="qd-num"),
                html.Td(f"{t['rate_limited_tenant']:,}", className="qd-num"),
                html.Td(f"{t['limiter']:,}", className="qd-num"),
                html.Td(f"{t['status_5xx']:,}", className="qd-num"),
                html.Td(f"{int(t['bytes'] or 0) / 1e9:.2f}", className="qd-num"),
                html.Td(f"{t['served'] / days:.1f}" if days else "—", className="qd-num"),
            ],
            **data_attrs(tenant=str(t["tenant"])),
        )
        for t in tenants
    ]
    headers = [
        "Tenant",
        "Requests",
        "Served",
        "Covered",
        "User limit 429",
        "Tenant limit 429",
        "Limiter",
        "5xx",
        "GB",
        "Served/day",
    ]
    return _table(headers, rows, "egress-tenants")


def uncovered_table(routes: list[dict[str, Any]]) -> html.Table | html.P:
    """Export routes seen in the logs but not declared: uncovered flows."""
    if not routes:
        return html.P("Every export route seen is declared.", className="qd-empty")
    rows = [
        html.Tr(
            [
                html.Td(str(r["route"]), className="qd-mono"),
                html.Td(f"{int(r['requests']):,}", className="qd-num"),
                html.Td(f"{int(r['served']):,}", className="qd-num"),
                html.Td(
                    pd.Timestamp(r["last_seen"]).strftime("%Y-%m-%d %H:%M"), className="qd-mono"
                ),
            ]
        )
        for r in routes
    ]
    return _table(["Route", "Requests", "Served", "Last seen (UTC)"], rows, "egress-gaps")


def daily_figure(daily: pd.DataFrame) -> go.Figure:
    """Downloads per day by outcome (2xx, 429, 5xx), stacked."""
    fig = go.Figure()
    if not daily.empty:
        per_day = daily.groupby("day")[["r2xx", "r429", "r5xx"]].sum().reset_index()
        for column, name, colour in (
            ("r2xx", "2xx", "#1f4e79"),
            ("r429", "429 (rate-limited)", "#b45309"),
            ("r5xx", "5xx", "#b91c1c"),
        ):
            fig.add_bar(x=per_day["day"], y=per_day[column], name=name, marker_color=colour)
    fig.update_layout(
        barmode="stack",
        height=300,
        margin={"l": 40, "r": 10, "t": 30, "b": 40},
        template="plotly_white",
        title="Downloads per day by outcome",
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def tenant_rate_figure(daily: pd.DataFrame) -> go.Figure:
    """Downloads per day per tenant."""
    fig = go.Figure()
    for tenant, part in daily.groupby("tenant") if not daily.empty else []:
        fig.add_scatter(x=part["day"], y=part["events"], mode="lines+markers", name=str(tenant))
    fig.update_layout(
        height=300,
        margin={"l": 40, "r": 10, "t": 30, "b": 40},
        template="plotly_white",
        title="Download rate per tenant (per day)",
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def egress_view(
    *,
    summary: dict[str, Any],
    daily: pd.DataFrame,
    days: float,
    window_label: str,
) -> html.Div:
    """The Egress page body (``summary``: `EgressSummary.as_dict()` plus `limits`)."""
    return html.Div(
        [
            html.P(window_label, className="qd-subtitle"),
            egress_stats(summary),
            limits_note(summary["limits"]),
            html.Div(
                [
                    dcc.Graph(figure=daily_figure(daily), config={"displaylogo": False}),
                    dcc.Graph(figure=tenant_rate_figure(daily), config={"displaylogo": False}),
                ],
                className="qd-section",
            ),
            html.H2("Per tenant", className="qd-h"),
            tenant_table(summary["tenants"], days),
            html.H2("Undeclared export routes (uncovered flows)", className="qd-h"),
            uncovered_table(summary["uncovered_routes"]),
        ]
    )
