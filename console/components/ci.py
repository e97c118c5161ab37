"""Pure builders for the CI page: lead-time summary and before/after, trend, histogram, slowest
PRs, waiting SHAs, cache hit ratio, shard balance, flaky quarantine.

Everything takes frames from `store.queries.ci` (no session, no context) and returns Dash
components or figures, so it is tested without a server. Lead times are shown in minutes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dash_ag_grid as dag
import pandas as pd
import plotly.graph_objects as go
from dash import dcc, html

from console.components.html_attrs import data_attrs
from console.components.ingest import format_timestamp
from store.queries.ci import (
    CiPageData,
    LeadTimeSummary,
    StageSummary,
    lead_time_daily_frame,
    summarize_lead_times,
)

DEFAULT_TARGETS_S = {"p50": 15 * 60.0, "p95": 25 * 60.0}
SLOWEST_SHOWN = 15
WAITING_SHOWN = 25
LINE_P50 = "#1f4e79"
LINE_P95 = "#b45309"
TARGET = "#6b7280"
BEFORE = "#9ca3af"
AFTER = "#1f4e79"
GRAPH_CONFIG: Any = {"displayModeBar": False, "responsive": True}

TREND = "ci-trend"
HISTOGRAM = "ci-histogram"
BEFORE_AFTER = "ci-before-after"
CACHE = "ci-cache"
SHARDS = "ci-shards"
QUARANTINE_GRID = "ci-quarantine-grid"


@dataclass(frozen=True)
class CiTargets:
    """The lead-time targets in seconds (from the sprint's goals on this metric)."""

    p50_s: float = DEFAULT_TARGETS_S["p50"]
    p95_s: float = DEFAULT_TARGETS_S["p95"]


def minutes(seconds: float | None) -> str:
    """`13.9 min`, or `—` for no value."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "—"
    return f"{seconds / 60:.1f} min"


def change_text(before: float | None, after: float | None) -> str:
    """`−23 % (21.0 → 16.2 min)`; says why when a side has no data."""
    if before is None or after is None:
        return "needs lead times in both windows"
    if before == 0:
        return f"{minutes(before)} → {minutes(after)}"
    pct = (after - before) / before * 100
    sign = "−" if pct < 0 else "+"
    return f"{sign}{abs(pct):.0f} % ({minutes(before)} → {minutes(after)})"


def _layout(fig: go.Figure, *, height: int, yaxis: str, xaxis: str = "") -> go.Figure:
    fig.update_layout(
        height=height,
        margin={"l": 50, "r": 10, "t": 10, "b": 40},
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="#ffffff",
        legend={"orientation": "h", "y": 1.12, "x": 0},
        yaxis={"title": yaxis, "gridcolor": "#e5e7eb", "rangemode": "tozero"},
        xaxis={"title": xaxis, "gridcolor": "#f3f4f6"},
    )
    return fig


def _graph(graph_id: str, fig: go.Figure, height: int) -> dcc.Graph:
    return dcc.Graph(id=graph_id, figure=fig, config=GRAPH_CONFIG, style={"height": f"{height}px"})


def _empty(text: str) -> html.P:
    return html.P(text, className="qd-muted")


# --------------------------------------------------------------------------------------------
# Lead time
# --------------------------------------------------------------------------------------------


def trend_figure(daily: pd.DataFrame, targets: CiTargets) -> go.Figure:
    """Daily p50 and p95 (minutes) with the 15/25-minute target lines."""
    days = list(daily["day"])
    fig = go.Figure(
        [
            go.Scatter(
                x=days,
                y=[v / 60 for v in daily["p50_s"]],
                name="p50",
                mode="lines+markers",
                line={"color": LINE_P50, "width": 2},
            ),
            go.Scatter(
                x=days,
                y=[v / 60 for v in daily["p95_s"]],
                name="p95",
                mode="lines+markers",
                line={"color": LINE_P95, "width": 2},
            ),
        ]
    )
    for value, label in ((targets.p50_s, "p50 target"), (targets.p95_s, "p95 target")):
        fig.add_hline(
            y=value / 60,
            line={"color": TARGET, "dash": "dash", "width": 1},
            annotation_text=f"{label} {value / 60:.0f} min",
            annotation_position="top left",
        )
    return _layout(fig, height=280, yaxis="minutes", xaxis="day preview ready (UTC)")


def histogram_figure(lead_times: pd.DataFrame, targets: CiTargets) -> go.Figure:
    """Distribution of per-SHA lead times (minutes) with the targets as vertical lines."""
    fig = go.Figure(
        go.Histogram(
            x=[s / 60 for s in lead_times["seconds"]],
            xbins={"size": 2.5},
            marker={"color": AFTER},
            name="SHAs",
        )
    )
    for value in (targets.p50_s, targets.p95_s):
        fig.add_vline(x=value / 60, line={"color": TARGET, "dash": "dash", "width": 1})
    return _layout(fig, height=260, yaxis="SHAs", xaxis="PR→preview (minutes)")


def before_after_figure(before: LeadTimeSummary, after: LeadTimeSummary) -> go.Figure:
    """p50 and p95 of the baseline window next to the selected window (minutes)."""
    labels = ["p50", "p95"]

    def values(s: LeadTimeSummary) -> list[float | None]:
        return [None if v is None else v / 60 for v in (s.p50_s, s.p95_s)]

    fig = go.Figure(
        [
            go.Bar(
                x=labels,
                y=values(before),
                name=f"before (n={before.count})",
                marker={"color": BEFORE},
            ),
            go.Bar(
                x=labels, y=values(after), name=f"after (n={after.count})", marker={"color": AFTER}
            ),
        ]
    )
    fig.update_layout(barmode="group")
    return _layout(fig, height=260, yaxis="minutes")


def summary_strip(
    after: LeadTimeSummary,
    before: LeadTimeSummary,
    waiting: int,
    targets: CiTargets,
    goals: Mapping[str, Any] | None = None,
) -> html.Div:
    """p50, p95 with their targets and sample count, before → after, SHAs still waiting.

    ``goals`` maps `p50`/`p95` to the sprint goal's evaluation (store.goals.CheckResult) when this
    page shows the goal's own measure (its repo and window): the badge is then that evaluation's
    status, never one computed here, and links to the rows. Without it the figure is another
    measure (another repo) and says so instead of showing a status.
    """

    def figure(label: str, value: float | None, target: float, was: float | None) -> html.Div:
        goal = (goals or {}).get(label.split()[0])
        extra: list[Any] = []
        if goal is not None:
            status = str(goal.status)
            text = STATUS_TEXT.get(status, status.upper())
            extra.append(
                dcc.Link(
                    f"{goal.samples:,} SHAs →", href=goal.rows_view or "#", className="qd-area-link"
                )
            )
        else:
            status, text = "no_data", "NOT THE GOAL"
            extra.append(
                html.Div(
                    "other measure: the sprint goal is measured on its top repo",
                    className="qd-muted",
                )
            )
        css = status.replace("_", "-")
        return html.Div(
            [
                html.Span(text, className=f"qd-badge qd-status--{css}"),
                html.Div(label, className="qd-summary-total"),
                html.Span(minutes(value), className="qd-summary-count"),
                html.Div(f"target < {target / 60:.0f} min", className="qd-muted"),
                html.Div(f"before/after: {change_text(was, value)}", className="qd-muted"),
                *extra,
            ],
            className=f"qd-summary-item qd-status--{css}",
            **data_attrs(figure=label.split()[0], status=status),
        )

    return html.Div(
        [
            figure("p50 PR→preview", after.p50_s, targets.p50_s, before.p50_s),
            figure("p95 PR→preview", after.p95_s, targets.p95_s, before.p95_s),
            html.Div(
                [
                    html.Span(f"{after.count:,}", className="qd-summary-count"),
                    html.Div("SHAs with a ready preview", className="qd-muted"),
                    html.Div(f"baseline: {before.count:,}", className="qd-muted"),
                ],
                className="qd-summary-item",
                **data_attrs(figure="samples"),
            ),
            html.Div(
                [
                    html.Span(f"{waiting:,}", className="qd-summary-count"),
                    html.Div("SHAs still waiting for a preview", className="qd-muted"),
                ],
                className="qd-summary-item",
                **data_attrs(figure="waiting"),
            ),
        ],
        className="qd-summary",
        role="status",
    )


STATUS_TEXT = {"met": "MET", "at_risk": "AT RISK", "missed": "MISSED", "no_data": "NO DATA"}


def stages_table(after: Sequence[StageSummary], before: Sequence[StageSummary]) -> html.Div:
    """p50/p95 of each lead-time stage, before → after (DV-1503: where the minutes go)."""
    if not any(s.count for s in after):
        return html.Div(_empty("No SHA reached a ready preview in this window."))
    was = {s.stage: s for s in before}
    rows = []
    for s in after:
        b = was.get(s.stage)
        rows.append(
            html.Tr(
                [
                    html.Th(s.label, scope="row"),
                    html.Td(minutes(s.p50_s)),
                    html.Td(minutes(s.p95_s)),
                    html.Td(change_text(b.p50_s if b else None, s.p50_s)),
                    html.Td(f"{s.count:,}"),
                ],
                **data_attrs(stage=s.stage),
            )
        )
    head = html.Thead(
        html.Tr(
            [
                html.Th("Stage"),
                html.Th("p50"),
                html.Th("p95"),
                html.Th("p50 before → after"),
                html.Th("SHAs"),
            ]
        )
    )
    return html.Div(
        [
            html.Table([head, html.Tbody(rows)], className="qd-table qd-stages"),
            html.P(
                "The four stages cut each SHA's own lead time, so per SHA they add up to it; "
                "percentiles of stages do not add up to the total's percentile.",
                className="qd-muted",
            ),
        ],
        className="qd-table-wrap",
    )


def _short(sha: Any) -> str:
    return str(sha)[:7]


def _pr_cell(pr: Any, url: Any) -> Any:
    if pr is None or (isinstance(pr, float) and math.isnan(pr)):
        return html.Span("unmapped", className="qd-muted", title="no PR known for this SHA")
    if isinstance(url, str) and url:
        return html.A(f"#{int(pr)}", href=url, target="_blank", rel="noopener")
    return f"#{int(pr)}"


def slowest_table(lead_times: pd.DataFrame, limit: int = SLOWEST_SHOWN) -> html.Table | html.P:
    """The slowest SHAs with links to their PRs on GitHub."""
    if lead_times.empty:
        return _empty("No SHA reached a ready preview in this window.")
    top = lead_times.sort_values("seconds", ascending=False).head(limit)
    rows = [
        html.Tr(
            [
                html.Td(_pr_cell(r["pr"], r["pr_url"])),
                html.Td(str(r["title"]) if isinstance(r["title"], str) else ""),
                html.Td(html.Code(_short(r["sha"]))),
                html.Td(r["repo"]),
                html.Td(format_timestamp(r["started_at"])),
                html.Td(format_timestamp(r["preview_ready_at"])),
                html.Td(minutes(float(r["seconds"]))),
            ],
            **data_attrs(sha=str(r["sha"])),
        )
        for r in top.to_dict("records")
    ]
    head = html.Thead(
        html.Tr(
            [
                html.Th(h)
                for h in ("PR", "title", "SHA", "repo", "first CI run", "preview ready", "lead")
            ]
        )
    )
    return html.Table([head, html.Tbody(rows)], className="qd-table ci-slowest")


def waiting_table(waiting: pd.DataFrame, limit: int = WAITING_SHOWN) -> html.Div:
    """SHAs whose preview is not ready yet, longest waiting first (counted, never dropped)."""
    if waiting.empty:
        return html.Div(_empty("No SHA is waiting for its preview."))
    top = waiting.sort_values("waiting_s", ascending=False).head(limit)
    rows = [
        html.Tr(
            [
                html.Td(html.Code(_short(r["sha"]))),
                html.Td(r["repo"]),
                html.Td(format_timestamp(r["started_at"])),
                html.Td(minutes(float(r["waiting_s"]))),
            ]
        )
        for r in top.to_dict("records")
    ]
    note = f"{len(waiting):,} SHAs waiting" + (
        f"; the {limit} longest shown" if len(waiting) > limit else ""
    )
    return html.Div(
        [
            html.P(note, className="qd-muted"),
            html.Table(
                [
                    html.Thead(
                        html.Tr([html.Th(h) for h in ("SHA", "repo", "first CI run", "waiting")])
                    ),
                    html.Tbody(rows),
                ],
                className="qd-table ci-waiting",
            ),
        ]
    )


# --------------------------------------------------------------------------------------------
# Cache, shards, flaky quarantine, deliveries
# --------------------------------------------------------------------------------------------


def cache_figure(cache_daily: pd.DataFrame) -> go.Figure:
    """Daily exact-key cache hit ratio (%), with lookups as hover detail."""
    fig = go.Figure(
        go.Scatter(
            x=list(cache_daily["day"]),
            y=[r * 100 for r in cache_daily["ratio"]],
            mode="lines+markers",
            line={"color": LINE_P50, "width": 2},
            customdata=list(zip(cache_daily["hits"], cache_daily["lookups"], strict=True)),
            hovertemplate=(
                "%{y:.1f} %% (%{customdata[0]} / %{customdata[1]} lookups)<extra></extra>"
            ),
            name="hit ratio",
        )
    )
    fig.update_yaxes(range=[0, 100])
    return _layout(fig, height=240, yaxis="exact-key hits %", xaxis="day (UTC)")


def cache_summary(cache_daily: pd.DataFrame) -> str:
    """`86.1 % exact-key hits (1,234 / 1,433 lookups)`."""
    hits, lookups = int(cache_daily["hits"].sum()), int(cache_daily["lookups"].sum())
    if not lookups:
        return "No cache lookups reported in this window."
    return f"{hits / lookups * 100:.1f} % exact-key hits ({hits:,} / {lookups:,} lookups)"


def _key(key: Any) -> tuple[str, str, int]:
    repo, workflow, total = key
    return str(repo), str(workflow), int(total)


def shard_figure(shards: pd.DataFrame) -> go.Figure:
    """Mean job duration per shard index, one bar group per workflow (seconds → minutes)."""
    fig = go.Figure()
    for key, group in shards.groupby(["repo", "workflow", "shard_total"], sort=True):
        repo, workflow, total = _key(key)
        fig.add_trace(
            go.Bar(
                x=[f"{int(i)}/{int(total)}" for i in group["shard_index"]],
                y=[v / 60 for v in group["mean_s"]],
                name=f"{repo} · {workflow}",
                customdata=list(group["jobs"]),
                hovertemplate=(
                    "shard %{x}: %{y:.1f} min mean over %{customdata} jobs<extra></extra>"
                ),
            )
        )
    fig.update_layout(barmode="group")
    return _layout(fig, height=240, yaxis="mean job minutes", xaxis="shard")


def shard_balance_text(shards: pd.DataFrame) -> list[str]:
    """Per workflow: slowest shard mean / fastest shard mean (1.00 = balanced)."""
    lines = []
    for key, group in shards.groupby(["repo", "workflow", "shard_total"], sort=True):
        repo, workflow, total = _key(key)
        fastest, slowest = float(group["mean_s"].min()), float(group["mean_s"].max())
        ratio = slowest / fastest if fastest > 0 else float("inf")
        lines.append(
            f"{repo} · {workflow} ({int(total)} shards): slowest/fastest {ratio:.2f}"
            f" ({minutes(slowest)} vs {minutes(fastest)})"
        )
    return lines


QUARANTINE_COLUMN_DEFS = [
    {"field": "test_id", "headerName": "test", "flex": 3, "minWidth": 280},
    {"field": "repo", "flex": 1},
    {"field": "owner", "flex": 1},
    {"field": "status", "flex": 1},
    {"field": "flaky_shas", "headerName": "flaky SHAs (window)", "flex": 1},
    {"field": "last_flaked_at", "headerName": "last flake", "flex": 1},
    {"field": "expires_at", "headerName": "expires", "flex": 1},
]


def quarantine_rows(quarantine: pd.DataFrame) -> list[dict[str, Any]]:
    """Grid rows for the quarantine (timestamps as ISO-8601 UTC, unknown owners named)."""
    return [
        {
            "test_id": r["test_id"],
            "repo": r["repo"],
            "owner": r["owner"] if isinstance(r["owner"], str) else "unowned",
            "status": "quarantined" if bool(r["active"]) else "expired",
            "flaky_shas": int(r["flaky_shas"]),
            "last_flaked_at": format_timestamp(r["last_flaked_at"]),
            "expires_at": format_timestamp(r["expires_at"]),
        }
        for r in quarantine.to_dict("records")
    ]


def quarantine_grid(quarantine: pd.DataFrame, quarantine_days: int = 14) -> html.Div:
    """The flaky-test quarantine: active entries first, with owner and expiry date."""
    if quarantine.empty:
        return html.Div(_empty("No flaky test detected: nothing is quarantined."))
    active = int(quarantine["active"].sum())
    return html.Div(
        [
            html.P(
                f"{active} quarantined, {len(quarantine) - active} expired. A test enters when it "
                "failed and then passed on a retry of the same SHA; the entry expires "
                f"{quarantine_days} days after its last flake unless it flakes again.",
                className="qd-muted",
            ),
            dag.AgGrid(
                id=QUARANTINE_GRID,
                rowData=quarantine_rows(quarantine),
                columnDefs=QUARANTINE_COLUMN_DEFS,
                defaultColDef={"sortable": True, "filter": True, "resizable": True},
                dashGridOptions={"pagination": True, "paginationPageSize": 20},
                style={"height": "360px"},
                className="ag-theme-alpine",
            ),
        ]
    )


def deliveries_line(deliveries: pd.DataFrame) -> str:
    """`webhook deliveries: pull_request 12 stored · star 1 ignored`."""
    if deliveries.empty:
        return "No webhook deliveries in this window."
    parts = [
        f"{r['event']} {int(r['deliveries']):,} {r['outcome']}"
        for r in deliveries.to_dict("records")
    ]
    return "Webhook deliveries: " + " · ".join(parts)


# --------------------------------------------------------------------------------------------
# The page body
# --------------------------------------------------------------------------------------------


def _section(title: str, *children: Any, section: str) -> html.Section:
    return html.Section(
        [html.H2(title, className="qd-h2"), *children],
        className="qd-section",
        **data_attrs(section=section),
    )


def ci_view(
    data: CiPageData,
    *,
    range_label: str,
    repo: str | None,
    targets: CiTargets,
    definition: str,
    read_at: datetime,
    quarantine_days: int = 14,
    goals: Mapping[str, Any] | None = None,
) -> html.Div:
    """The whole CI body for one repo selection and window (``goals``: see summary_strip)."""
    after = summarize_lead_times(data.lead_times)
    before = summarize_lead_times(data.baseline_lead_times)
    daily = lead_time_daily_frame(data.lead_times)
    window = f"{format_timestamp(data.window.start)} → {format_timestamp(data.window.end)}"
    baseline = f"{format_timestamp(data.baseline.start)} → {format_timestamp(data.baseline.end)}"
    lead_time_charts: list[Any]
    if data.lead_times.empty:
        lead_time_charts = [_empty("No SHA reached a ready preview in this window.")]
    else:
        lead_time_charts = [
            _graph(TREND, trend_figure(daily, targets), 280),
            html.H3("Distribution", className="qd-h2"),
            _graph(HISTOGRAM, histogram_figure(data.lead_times, targets), 260),
        ]
    return html.Div(
        [
            html.P(
                f"{repo or 'All repositories'} · {range_label}: {window} · baseline {baseline}"
                f" · read {format_timestamp(read_at)}",
                className="qd-subtitle",
            ),
            summary_strip(after, before, len(data.waiting), targets, goals),
            html.Details(
                [html.Summary("Definition: PR→preview lead time"), html.P(definition)],
                className="qd-goal-definition",
            ),
            _section("PR→preview lead time, daily p50 / p95", *lead_time_charts, section="trend"),
            _section(
                "Lead-time stages: queue → CI → hand-off → preview boot",
                stages_table(data.stages, data.baseline_stages),
                section="stages",
            ),
            _section(
                "Before / after",
                _graph(BEFORE_AFTER, before_after_figure(before, after), 260),
                section="before-after",
            ),
            _section("Slowest PRs", slowest_table(data.lead_times), section="slowest"),
            _section("Still waiting for a preview", waiting_table(data.waiting), section="waiting"),
            _section(
                "Cache hit ratio (exact key)",
                html.P(cache_summary(data.cache_daily), className="qd-muted"),
                *(
                    []
                    if data.cache_daily.empty
                    else [_graph(CACHE, cache_figure(data.cache_daily), 240)]
                ),
                section="cache",
            ),
            _section(
                "Shard balance",
                *(
                    [_empty("No sharded job reported in this window.")]
                    if data.shards.empty
                    else [
                        html.Ul([html.Li(t) for t in shard_balance_text(data.shards)]),
                        _graph(SHARDS, shard_figure(data.shards), 240),
                    ]
                ),
                section="shards",
            ),
            _section(
                "Flaky test quarantine",
                quarantine_grid(data.quarantine, quarantine_days),
                section="flaky",
            ),
            html.P(deliveries_line(data.deliveries), className="qd-muted"),
        ],
        className="ci-body",
    )


def repo_options(repos: Sequence[str]) -> list[dict[str, str]]:
    """Dropdown options: every repository, plus all of them together."""
    return [{"label": "All repositories", "value": ""}] + [{"label": r, "value": r} for r in repos]


def targets_from_goals(goals: Sequence[Any], unit_seconds: Mapping[str, float]) -> CiTargets:
    """The p50/p95 targets of the sprint goals on `ci.pr_preview_lead_time`, in seconds."""
    found = dict(DEFAULT_TARGETS_S)
    for goal in goals:
        if goal.metric == "ci.pr_preview_lead_time" and goal.aggregation in found:
            factor = unit_seconds.get(goal.target.unit)
            if factor:
                found[goal.aggregation] = float(goal.target.value) * factor
    return CiTargets(found["p50"], found["p95"])
