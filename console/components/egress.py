"""Pure builders for the Egress page: coverage and limiter figures, tenant rates, uncovered routes.

Frames in, Dash components out (no session, no context). Coverage below 100 % and any 5xx are
shown as missed; a 503 on a download route is called out as a limiter answering 503 instead of
429; no events is grey "no data", never green.
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


def egress_stats(summary: pd.DataFrame) -> html.Div:
    """Coverage, 429 and 5xx figures over the window (columns of `export_summary_frame`)."""
    events = int(summary["events"].sum()) if not summary.empty else 0
    if not events:
        return html.Div(
            _stat("coverage", "Token + watermark coverage", "—", "no_data", "no export events"),
            className="qd-goals",
        )
    covered = int(summary["covered"].sum())
    r429, r5xx, r503 = (int(summary[c].sum()) for c in ("r429", "r5xx", "r503"))
    coverage = covered / events * 100
    limiter_note = (
        f"{r503} answered 503: a limiter answering 503 instead of 429?"
        if r503
        else "rate limiting answers 429"
    )
    return html.Div(
        [
            _stat(
                "coverage",
                "Token + watermark coverage (target 100 %)",
                f"{coverage:.2f} %",
                "met" if covered == events else "missed",
                f"{events - covered} of {events:,} events uncovered",
            ),
            _stat(
                "r429",
                "Rate-limited downloads (429)",
                f"{r429:,}",
                None,  # not a target: counted apart from 5xx
                f"{r429 / events:.2%} of downloads",
            ),
            _stat(
                "r5xx",
                "Downloads answered 5xx (target 0)",
                f"{r5xx:,}",
                "met" if r5xx == 0 else "missed",
                limiter_note,
            ),
        ],
        className="qd-goals",
    )


def _table(headers: list[str], rows: list[Any], class_name: str) -> html.Table:
    return html.Table(
        [html.Thead(html.Tr([html.Th(h) for h in headers])), html.Tbody(rows)],
        className=f"qd-table {class_name}",
    )


def tenant_table(summary: pd.DataFrame, days: float) -> html.Table | html.P:
    """Per tenant: events, coverage, 429, 5xx, 503, volume and downloads per day."""
    if summary.empty:
        return html.P("No export events in this window.", className="qd-empty")
    rows = []
    for r in summary.sort_values("events", ascending=False).to_dict("records"):
        events = int(r["events"])
        rows.append(
            html.Tr(
                [
                    html.Th(str(r["tenant"] or "—"), scope="row"),
                    html.Td(f"{events:,}", className="qd-num"),
                    html.Td(f"{int(r['covered']) / events:.2%}", className="qd-num"),
                    html.Td(f"{int(r['r429']):,}", className="qd-num"),
                    html.Td(f"{int(r['r5xx']):,}", className="qd-num"),
                    html.Td(f"{int(r['r503']):,}", className="qd-num"),
                    html.Td(f"{int(r['bytes'] or 0) / 1e9:.2f}", className="qd-num"),
                    html.Td(f"{events / days:.1f}" if days else "—", className="qd-num"),
                ],
                **data_attrs(tenant=str(r["tenant"])),
            )
        )
    headers = ["Tenant", "Events", "Covered", "429", "5xx", "503", "GB", "Downloads/day"]
    return _table(headers, rows, "egress-tenants")


def uncovered_table(frame: pd.DataFrame) -> html.Table | html.P:
    """Routes that served exports without a valid token or without the watermark."""
    if frame.empty:
        return html.P("Every export carried a valid token and the watermark.", className="qd-empty")
    rows = [
        html.Tr(
            [
                html.Td(str(r["route"]), className="qd-mono"),
                html.Td(str(r["token_state"])),
                html.Td("yes" if r["watermarked"] else "no"),
                html.Td(f"{int(r['events']):,}", className="qd-num"),
                html.Td(
                    pd.Timestamp(r["last_seen"]).strftime("%Y-%m-%d %H:%M"), className="qd-mono"
                ),
            ]
        )
        for r in frame.to_dict("records")
    ]
    return _table(["Route", "Token", "Watermark", "Events", "Last seen (UTC)"], rows, "egress-gaps")


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
    summary: pd.DataFrame,
    daily: pd.DataFrame,
    uncovered: pd.DataFrame,
    days: float,
    window_label: str,
) -> html.Div:
    """The Egress page body."""
    return html.Div(
        [
            html.P(window_label, className="qd-subtitle"),
            egress_stats(summary),
            html.Div(
                [
                    dcc.Graph(figure=daily_figure(daily), config={"displaylogo": False}),
                    dcc.Graph(figure=tenant_rate_figure(daily), config={"displaylogo": False}),
                ],
                className="qd-section",
            ),
            html.H2("Per tenant", className="qd-h"),
            tenant_table(summary, days),
            html.H2("Uncovered export routes", className="qd-h"),
            uncovered_table(uncovered),
        ]
    )
