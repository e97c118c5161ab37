"""Pure builders for the Traffic page: weight vs observed share, 429/5xx per ingress, charts.

Frames come from `store.queries.traffic`; nothing here reads the store. Status is colour and
text; a missing value is `—`, never 0.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from dash import dcc, html

from console.components.html_attrs import data_attrs
from console.components.ingest import format_timestamp

TARGET_5XX = 0.0
REGION_COLOURS = {"us-east": "#1f4e79", "us-west": "#b45309"}
MAX_ANNOTATIONS = 24
DNS_NOTE = (
    "Configured weights and observed request shares differ while resolvers and clients still "
    "hold the old answer (record TTL plus client-side caching): expect the observed share to "
    "follow a weight change over minutes, not at once."
)
MEASURE_NAME = "5xx share of all ingress requests"
MEASURE_NOTE = (
    "This 5xx share is a traffic-health measure, not a plan goal: every request an ingress "
    "answered (ingress-nginx request counters, all routes), as a share of its requests. The "
    "Overview's goal \u201cDownload rate cap without 5xx\u201d (exports.download_5xx, target "
    "= 0) is a different measure: a count of export downloads answered with a 5xx, read from "
    "the export events and the limiter's access log. One can be 0 while the other is not."
)
LIMITER_NOTE = (
    "503 with no 429: a limiter on ingress-nginx's default limit-req-status-code (503). Set "
    "limit-req-status-code and limit-conn-status-code to 429 so rate limiting is told apart "
    "from upstream failures."
)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT


def pct(value: Any, digits: int = 1) -> str:
    """A 0–1 ratio as a percentage; `—` when missing."""
    return "—" if _missing(value) else f"{float(value) * 100:.{digits}f} %"


def rate(value: Any) -> str:
    """A rate in req/s; `—` when missing."""
    return "—" if _missing(value) else f"{float(value):,.2f}/s"


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in df.to_dict("records")]


def _badge(text: str, status: str) -> html.Span:
    return html.Span(text, className=f"qd-badge qd-status--{status}")


def share_table(shares: pd.DataFrame) -> html.Div | html.P:
    """Configured weight share beside observed request share per region (`region_share_frame`)."""
    if shares.empty:
        return html.P("No weights and no traffic observed in this window", className="qd-empty")
    rows = []
    for r in _records(shares):
        gap = (
            None
            if _missing(r["weight_share"]) or _missing(r["observed_share"])
            else float(r["observed_share"]) - float(r["weight_share"])
        )
        rows.append(
            html.Tr(
                [
                    html.Td(r["region"]),
                    html.Td(
                        "—" if _missing(r["weight"]) else str(int(r["weight"])), className="qd-num"
                    ),
                    html.Td(pct(r["weight_share"]), className="qd-num"),
                    html.Td(pct(r["observed_share"]), className="qd-num"),
                    html.Td("—" if gap is None else f"{gap * 100:+.1f} pt", className="qd-num"),
                    html.Td(rate(r["requests_per_s"]), className="qd-num"),
                ],
                **data_attrs(region=r["region"]),
            )
        )
    return html.Div(
        [
            html.Table(
                [
                    html.Thead(
                        html.Tr(
                            [
                                html.Th("Region"),
                                html.Th("Weight"),
                                html.Th("Weight share"),
                                html.Th("Observed share"),
                                html.Th("Gap"),
                                html.Th("Requests"),
                            ]
                        )
                    ),
                    html.Tbody(rows),
                ],
                className="qd-table traffic-shares",
            ),
            html.P(DNS_NOTE, className="qd-muted"),
        ]
    )


def ingress_table(rates: pd.DataFrame) -> html.Div | html.P:
    """429 and 5xx per region and ingress with the 5xx target and the limiter-503 flag."""
    if rates.empty:
        return html.P("No traffic samples in this window", className="qd-empty")
    rows = []
    for r in _records(rates):
        ok_5xx = not _missing(r["ratio_5xx"]) and float(r["ratio_5xx"]) <= TARGET_5XX
        flag = (
            _badge("LIMITER ANSWERS 503", "missed")
            if r["limiter_503"]
            else html.Span("—", className="qd-muted")
        )
        rows.append(
            html.Tr(
                [
                    html.Td(r["region"]),
                    html.Td(r["ingress"]),
                    html.Td(rate(r["requests_per_s"]), className="qd-num"),
                    html.Td(rate(r["rate_429_per_s"]), className="qd-num"),
                    html.Td(pct(r["ratio_429"], 2), className="qd-num"),
                    html.Td(rate(r["rate_5xx_per_s"]), className="qd-num"),
                    html.Td(
                        [
                            pct(r["ratio_5xx"], 3),
                            " ",
                            _badge("ZERO", "met") if ok_5xx else _badge("ABOVE 0", "missed"),
                        ],
                        className="qd-num",
                    ),
                    html.Td(pct(r["cache_hit_ratio"]), className="qd-num"),
                    html.Td(flag),
                ],
                **data_attrs(region=r["region"], ingress=r["ingress"]),
            )
        )
    flagged = bool(rates["limiter_503"].any())
    return html.Div(
        [
            html.Table(
                [
                    html.Thead(
                        html.Tr(
                            [
                                html.Th("Region"),
                                html.Th("Ingress"),
                                html.Th("Requests"),
                                html.Th("429"),
                                html.Th("429 share"),
                                html.Th("5xx"),
                                html.Th(MEASURE_NAME),
                                html.Th("Cache hit"),
                                html.Th("Limiter"),
                            ]
                        )
                    ),
                    html.Tbody(rows),
                ],
                className="qd-table traffic-ingresses",
            ),
            html.P(
                "429s are rate limiting working as intended and are counted apart from 5xx. "
                + (LIMITER_NOTE if flagged else ""),
                className="qd-muted",
            ),
            html.P(
                [
                    MEASURE_NOTE + " ",
                    dcc.Link("The download-5xx goal and its rows are on Egress.", href="/egress"),
                ],
                className="qd-muted traffic-measure-note",
            ),
        ]
    )


def health_table(checks: pd.DataFrame) -> html.Table | html.P:
    """Latest status of every Route53 health check per checker region."""
    if checks.empty:
        return html.P("No Route53 health-check observations", className="qd-empty")
    rows = [
        html.Tr(
            [
                html.Td(r["health_check_id"]),
                html.Td(r["checker_region"]),
                html.Td(
                    _badge("HEALTHY", "met") if r["healthy"] else _badge("UNHEALTHY", "missed")
                ),
                html.Td(format_timestamp(r["checked_at"])),
                html.Td(str(r["status"])[:120], className="qd-muted"),
            ]
        )
        for r in _records(checks)
    ]
    return html.Table(
        [
            html.Thead(
                html.Tr(
                    [
                        html.Th("Health check"),
                        html.Th("Checker"),
                        html.Th("State"),
                        html.Th("Checked"),
                        html.Th("Status"),
                    ]
                )
            ),
            html.Tbody(rows),
        ],
        className="qd-table traffic-health",
    )


def _annotate(fig: go.Figure, annotations: pd.DataFrame) -> None:
    for r in _records(annotations.tail(MAX_ANNOTATIONS)):
        colour = "#b91c1c" if r["kind"] == "failover" else "#6b7280"
        fig.add_shape(
            type="line",
            x0=r["at"],
            x1=r["at"],
            y0=0,
            y1=1,
            yref="paper",
            line={"color": colour, "width": 1, "dash": "dot"},
        )
        fig.add_annotation(
            x=r["at"],
            y=1,
            yref="paper",
            text=r["label"],
            showarrow=False,
            textangle=-90,
            xanchor="left",
            yanchor="top",
            font={"size": 9, "color": colour},
        )


def _layout(fig: go.Figure, title: str, unit: str) -> go.Figure:
    fig.update_layout(
        title={"text": title, "font": {"size": 13}},
        margin={"l": 50, "r": 10, "t": 36, "b": 30},
        height=280,
        legend={"orientation": "h", "y": -0.18},
        xaxis={"type": "date"},
        yaxis={"title": unit, "rangemode": "tozero"},
        template="plotly_white",
    )
    return fig


def requests_figure(series: pd.DataFrame, annotations: pd.DataFrame) -> go.Figure:
    """Requests/s per region over time, with weight changes and failover phases marked."""
    fig = go.Figure()
    if not series.empty:
        per_region = series.groupby(["ts", "region"], as_index=False)["requests_per_s"].sum()
        for region, part in per_region.groupby("region"):
            fig.add_trace(
                go.Scattergl(
                    x=part["ts"],
                    y=part["requests_per_s"],
                    name=str(region),
                    mode="lines",
                    line={"color": REGION_COLOURS.get(str(region))},
                )
            )
        _annotate(fig, annotations)
    return _layout(fig, "Requests per region", "req/s")


def errors_figure(series: pd.DataFrame, annotations: pd.DataFrame) -> go.Figure:
    """429 and 5xx rates per region over time (429 dashed), annotated like the requests chart."""
    fig = go.Figure()
    if not series.empty:
        per_region = series.groupby(["ts", "region"], as_index=False)[
            ["rate_429_per_s", "rate_5xx_per_s"]
        ].sum()
        for region, part in per_region.groupby("region"):
            colour = REGION_COLOURS.get(str(region))
            fig.add_trace(
                go.Scattergl(
                    x=part["ts"],
                    y=part["rate_429_per_s"],
                    name=f"{region} 429",
                    mode="lines",
                    line={"color": colour, "dash": "dash"},
                )
            )
            fig.add_trace(
                go.Scattergl(
                    x=part["ts"],
                    y=part["rate_5xx_per_s"],
                    name=f"{region} 5xx",
                    mode="lines",
                    line={"color": colour},
                )
            )
        _annotate(fig, annotations)
    return _layout(fig, "429 (dashed) and 5xx per region", "req/s")


def cache_figure(series: pd.DataFrame) -> go.Figure:
    """Cache hit ratio per region over time (mean over its ingresses)."""
    fig = go.Figure()
    if not series.empty:
        per_region = series.groupby(["ts", "region"], as_index=False)["cache_hit_ratio"].mean()
        for region, part in per_region.groupby("region"):
            fig.add_trace(
                go.Scattergl(
                    x=part["ts"],
                    y=part["cache_hit_ratio"],
                    name=str(region),
                    mode="lines",
                    line={"color": REGION_COLOURS.get(str(region))},
                )
            )
    fig = _layout(fig, "Cache hit ratio", "ratio")
    fig.update_yaxes(range=[0, 1])
    return fig


def freshness_line(
    latest: datetime | None, now: datetime, *, stale_after_s: float, last_error: str | None
) -> html.P:
    """ "Latest sample at …", or "stale since …" (with the last collector error) when too old."""
    if latest is None:
        return html.P("No traffic samples stored yet", className="qd-empty traffic-freshness")
    age = (now - latest).total_seconds()
    if age > stale_after_s:
        text = f"Stale since {format_timestamp(latest)}"
        if last_error:
            text += f" — last collector error: {last_error[:200]}"
        return html.P(text, className="qd-error traffic-freshness", role="status")
    return html.P(
        f"Latest sample at {format_timestamp(latest)}", className="qd-muted traffic-freshness"
    )


def traffic_view(
    *,
    window_label: str,
    shares: pd.DataFrame,
    rates: pd.DataFrame,
    series: pd.DataFrame,
    annotations: pd.DataFrame,
    checks: pd.DataFrame,
    freshness: html.P,
) -> html.Div:
    """The whole Traffic body for one window."""
    graph_config: Any = {"displaylogo": False, "responsive": True}
    return html.Div(
        [
            html.P(window_label, className="qd-subtitle"),
            freshness,
            html.Section(
                [html.H2("Weight vs observed share", className="qd-h"), share_table(shares)],
                className="qd-section",
            ),
            html.Section(
                [
                    dcc.Graph(
                        figure=requests_figure(series, annotations),
                        config=graph_config,
                        className="traffic-requests-graph",
                    )
                ],
                className="qd-section",
            ),
            html.Section(
                [html.H2("429 vs 5xx per ingress", className="qd-h"), ingress_table(rates)],
                className="qd-section",
            ),
            html.Section(
                [
                    dcc.Graph(figure=errors_figure(series, annotations), config=graph_config),
                    dcc.Graph(figure=cache_figure(series), config=graph_config),
                ],
                className="qd-section",
            ),
            html.Section(
                [html.H2("Route53 health checks", className="qd-h"), health_table(checks)],
                className="qd-section",
            ),
        ]
    )
