"""Pure builders for the Failover page: RTO clock, RPO, phase timeline, lag chart, history.

Inputs are `store.queries.failover` results (a `RunDetail`, the runs frame, `Freshness`); the
page's 2-second refresh rebuilds them from those alone.
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
from store.queries.failover import PHASES as FAILOVER_PHASES
from store.queries.failover import RPO_TARGET_S, RTO_TARGET_S, Freshness, RunDetail

PHASE_LABELS = {
    "started": "Started",
    "promoted": "Promoted",
    "writable": "Writable (first write)",
    "traffic_shifted": "Traffic shifted",
    "complete": "Complete",
}
PHASE_COLOURS = {
    "started": "#b91c1c",
    "promoted": "#1f4e79",
    "writable": "#15803d",
    "traffic_shifted": "#b45309",
    "complete": "#4b5563",
}
AT_RISK_SHARE = 0.8
STALE_AFTER_S = 30.0
"""A run in progress whose sources have been silent this long shows "stale since …"."""


def duration(seconds: float | None) -> str:
    """`7 min 40 s`, `42 s`; `—` when missing."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "—"
    total = round(float(seconds))
    minutes, secs = divmod(abs(total), 60)
    sign = "-" if total < 0 else ""
    return f"{sign}{minutes} min {secs:02d} s" if minutes else f"{sign}{secs} s"


def _status(value: float | None, target: float, *, final: bool) -> str:
    """`met`/`missed` for a measured value; `running`/`at-risk`/`missed` for a running clock."""
    if value is None:
        return "no-data"
    if value > target:
        return "missed"
    if final:
        return "met"
    return "at-risk" if value > AT_RISK_SHARE * target else "running"


STATUS_TEXT = {
    "met": "MET",
    "missed": "MISSED",
    "at-risk": "AT RISK",
    "running": "RUNNING",
    "no-data": "NO DATA",
}
STATUS_CLASS = {
    "met": "qd-status--met",
    "missed": "qd-status--missed",
    "at-risk": "qd-status--at-risk",
    "running": "qd-status--no-data",
    "no-data": "qd-status--no-data",
}


def rto_clock(detail: RunDetail) -> html.Div:
    """The RTO clock: measured RTO once writable, else the running time since the start."""
    measured = detail.rto_s is not None
    value = detail.rto_s if measured else detail.elapsed_s
    if not measured and not detail.in_progress:
        status, text = "no-data", "NOT MEASURED"
    else:
        status = _status(value, detail.rto_target_s, final=measured)
        text = STATUS_TEXT[status]
    caption = (
        "started → first write on the new primary"
        if measured
        else "running since the start (no successful write yet)"
        if detail.in_progress
        else "the run ended without a recorded first write"
    )
    return html.Div(
        [
            html.Div("RTO", className="qd-goal-metric"),
            html.Div(duration(value), className="qd-goal-value failover-rto-value"),
            html.Span(text, className=f"qd-badge {STATUS_CLASS[status]}"),
            html.Div(f"target ≤ {duration(detail.rto_target_s)}", className="qd-goal-target"),
            html.Div(caption, className="qd-muted"),
        ],
        className="qd-goal failover-rto",
        **data_attrs(status=status),
    )


def rpo_panel(detail: RunDetail) -> html.Div:
    """RPO: replication lag when promotion started (0 for a switchover) against 5 minutes."""
    status = _status(detail.rpo_s, detail.rpo_target_s, final=True)
    if detail.rpo_s is None:
        text, caption = "NO DATA", "no lag sample in the 15 minutes before the start"
    else:
        text = STATUS_TEXT[status]
        caption = (
            "switchover: no data loss by design"
            if detail.kind == "switchover"
            else "replication lag at the start of promotion"
        )
    return html.Div(
        [
            html.Div("RPO", className="qd-goal-metric"),
            html.Div(duration(detail.rpo_s), className="qd-goal-value failover-rpo-value"),
            html.Span(text, className=f"qd-badge {STATUS_CLASS[status]}"),
            html.Div(f"target ≤ {duration(detail.rpo_target_s)}", className="qd-goal-target"),
            html.Div(caption, className="qd-muted"),
        ],
        className="qd-goal failover-rpo",
        **data_attrs(status=status),
    )


def phase_timeline(detail: RunDetail) -> html.Ol:
    """The five phases in order: time reached and offset from the start, or "waiting"."""
    started = detail.phases.get("started", detail.started_at)
    items = []
    for phase in FAILOVER_PHASES:
        at = detail.phases.get(phase)
        reached = at is not None
        items.append(
            html.Li(
                [
                    html.Span(PHASE_LABELS[phase], className="qd-goal-title"),
                    " ",
                    html.Span(
                        f"{format_timestamp(at)} (+{duration((at - started).total_seconds())})"
                        if at is not None
                        else "waiting…",
                        className="qd-muted" if not reached else "",
                    ),
                ],
                className="failover-phase"
                + (" failover-phase--reached" if reached else " failover-phase--waiting"),
                **data_attrs(phase=phase, reached="true" if reached else "false"),
            )
        )
    return html.Ol(items, className="failover-timeline")


def timeline_figure(detail: RunDetail, *, now: datetime) -> go.Figure:
    """The run on a time axis (Gantt-like): one bar per phase span, the RTO clock against its
    target, and every reached phase marked with a line."""
    started = detail.phases.get("started", detail.started_at)
    end = detail.ended_at or now
    fig = go.Figure()
    reached = [(p, detail.phases[p]) for p in FAILOVER_PHASES if p in detail.phases]
    for (phase, at), nxt in zip(reached, [*reached[1:], None], strict=True):
        until = nxt[1] if nxt is not None else (None if phase == "complete" else end)
        if until is None or until <= at:
            continue
        fig.add_trace(
            go.Bar(
                base=[at],
                x=[(until - at).total_seconds() * 1000],
                y=["Phases"],
                orientation="h",
                name=PHASE_LABELS[phase],
                marker={"color": PHASE_COLOURS[phase]},
                hovertemplate=f"{PHASE_LABELS[phase]}: {duration((until - at).total_seconds())}"
                "<extra></extra>",
            )
        )
    clock_end = detail.phases.get("writable") or end
    clock_s = max(0.0, (clock_end - started).total_seconds())
    status = _status(clock_s, detail.rto_target_s, final=detail.rto_s is not None)
    fig.add_trace(
        go.Bar(
            base=[started],
            x=[clock_s * 1000],
            y=["RTO clock"],
            orientation="h",
            name=f"RTO {duration(clock_s)} ({STATUS_TEXT[status]})",
            marker={"color": "#b91c1c" if status == "missed" else "#1f4e79"},
            hovertemplate=f"RTO {duration(clock_s)}<extra></extra>",
        )
    )
    target_at = started + pd.Timedelta(seconds=detail.rto_target_s)
    fig.add_shape(
        type="line",
        x0=target_at,
        x1=target_at,
        y0=0,
        y1=1,
        yref="paper",
        line={"color": "#b91c1c", "dash": "dash"},
    )
    fig.add_annotation(
        x=target_at,
        y=0,
        yref="paper",
        text=f"RTO target {duration(detail.rto_target_s)}",
        showarrow=False,
        yanchor="bottom",
        font={"size": 9, "color": "#b91c1c"},
    )
    for phase, at in reached:
        fig.add_shape(
            type="line",
            x0=at,
            x1=at,
            y0=0,
            y1=1,
            yref="paper",
            line={"color": PHASE_COLOURS[phase], "width": 1, "dash": "dot"},
        )
        fig.add_annotation(
            x=at,
            y=1,
            yref="paper",
            text=PHASE_LABELS[phase],
            showarrow=False,
            textangle=-30,
            xanchor="left",
            yanchor="bottom",
            font={"size": 9, "color": PHASE_COLOURS[phase]},
        )
    fig.update_layout(
        title={"text": f"Timeline of {detail.run_key}", "font": {"size": 13}},
        barmode="overlay",
        margin={"l": 70, "r": 10, "t": 60, "b": 30},
        height=220,
        xaxis={"type": "date"},
        yaxis={"categoryorder": "array", "categoryarray": ["RTO clock", "Phases"]},
        legend={"orientation": "h", "y": -0.25},
        template="plotly_white",
    )
    return fig


def lag_figure(detail: RunDetail) -> go.Figure:
    """Replication lag before promotion, with every reached phase marked."""
    fig = go.Figure()
    lag = detail.lag
    if not lag.empty:
        for replica, part in lag.groupby("replica"):
            fig.add_trace(
                go.Scatter(x=part["ts"], y=part["lag_s"], name=str(replica), mode="lines+markers")
            )
    for phase in FAILOVER_PHASES:
        at = detail.phases.get(phase)
        if at is None:
            continue
        colour = PHASE_COLOURS[phase]
        fig.add_shape(
            type="line",
            x0=at,
            x1=at,
            y0=0,
            y1=1,
            yref="paper",
            line={"color": colour, "dash": "dot"},
        )
        fig.add_annotation(
            x=at, y=1, yref="paper", text=phase, showarrow=False, font={"size": 10, "color": colour}
        )
    fig.update_layout(
        title={"text": "Replication lag before promotion", "font": {"size": 13}},
        margin={"l": 50, "r": 10, "t": 36, "b": 30},
        height=240,
        xaxis={"type": "date"},
        yaxis={"title": "s", "rangemode": "tozero"},
        template="plotly_white",
        showlegend=False,
    )
    return fig


def events_list(detail: RunDetail) -> html.Table | html.P:
    """Every event and log line of the run (the run's evidence)."""
    if detail.events.empty:
        return html.P("No events recorded", className="qd-empty")
    rows = [
        html.Tr(
            [
                html.Td(format_timestamp(e["at"])),
                html.Td(e["phase"] or "log"),
                html.Td(e["source"]),
                html.Td(e["message"]),
            ]
        )
        for e in detail.events.to_dict("records")
    ]
    return html.Table(
        [
            html.Thead(html.Tr([html.Th(h) for h in ("At", "Phase", "Source", "Message")])),
            html.Tbody(rows),
        ],
        className="qd-table failover-events",
    )


def _cell(value: Any) -> str:
    return (
        "—"
        if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value))
        else str(value)
    )


def history_table(runs: pd.DataFrame, *, selected: str | None) -> html.Table | html.P:
    """Every run, newest first, with RTO and RPO badges and links to its page and JSON."""
    if runs.empty:
        return html.P("No failover runs recorded", className="qd-empty")
    rows = []
    for r in runs.to_dict("records"):
        rto = None if _cell(r["rto_s"]) == "—" else float(r["rto_s"])
        rpo = None if _cell(r["rpo_s"]) == "—" else float(r["rpo_s"])
        key = str(r["run_key"])
        verdict = _status(rto, RTO_TARGET_S, final=True)
        rpo_verdict = _status(rpo, RPO_TARGET_S, final=True)
        rows.append(
            html.Tr(
                [
                    html.Td(dcc.Link(key, href=f"/failover?run={key}")),
                    html.Td(f"{r['environment']} / {r['kind']}"),
                    html.Td(format_timestamp(r["started_at"])),
                    html.Td(
                        [
                            duration(rto),
                            " ",
                            html.Span(
                                STATUS_TEXT[verdict] if rto is not None else "—",
                                className=f"qd-badge {STATUS_CLASS[verdict]}",
                            ),
                        ],
                        className="qd-num",
                    ),
                    html.Td(
                        [
                            duration(rpo),
                            " ",
                            html.Span(
                                STATUS_TEXT[rpo_verdict] if rpo is not None else "—",
                                className=f"qd-badge {STATUS_CLASS[rpo_verdict]} failover-badge",
                            ),
                        ],
                        className="qd-num",
                        **data_attrs(rpo_status=rpo_verdict),
                    ),
                    html.Td("in progress" if _cell(r["ended_at"]) == "—" else "complete"),
                    html.Td(html.A("JSON", href=f"/api/failover/runs/{key}")),
                ],
                className="failover-history-row"
                + (" failover-history-row--selected" if key == selected else ""),
                **data_attrs(run=key),
            )
        )
    return html.Table(
        [
            html.Thead(
                html.Tr(
                    [
                        html.Th(h)
                        for h in ("Run", "Env / kind", "Started", "RTO", "RPO", "State", "Evidence")
                    ]
                )
            ),
            html.Tbody(rows),
        ],
        className="qd-table failover-history",
    )


def freshness_line(fresh: Freshness, *, now: datetime, in_progress: bool) -> html.P:
    """ "Stale since …" while a run is in progress and its sources went quiet; else last data."""
    moments = [t for t in (fresh.last_ok_at, fresh.last_sample_at) if t is not None]
    latest = max(moments) if moments else None
    stale = in_progress and (latest is None or (now - latest).total_seconds() > STALE_AFTER_S)
    error = f" — last failure: {fresh.last_error[:200]}" if fresh.last_error else ""
    if stale:
        since = format_timestamp(latest) if latest else "the start (no data yet)"
        return html.P(
            f"Stale since {since}{error}", className="qd-error failover-freshness", role="status"
        )
    text = f"Latest data at {format_timestamp(latest)}" if latest else "No probe data yet"
    return html.P(text + error, className="qd-muted failover-freshness")


def failover_view(
    detail: RunDetail | None,
    runs: pd.DataFrame,
    fresh: Freshness,
    *,
    now: datetime,
    live: bool,
    unknown: str | None = None,
) -> html.Div:
    """The page body: the shown run (live or selected) and the history of runs.

    ``unknown`` is a `?run=` key that names no run: said above the live run, never hidden.
    """
    history = html.Section(
        [
            html.H2("History", className="qd-h"),
            history_table(runs, selected=detail.run_key if detail else None),
        ],
        className="qd-section",
    )
    missing = (
        html.P(
            f"No run {unknown} is recorded; showing the live run instead.",
            className="qd-error failover-unknown-run",
            role="status",
        )
        if unknown
        else None
    )
    if detail is None:
        return html.Div(
            [
                missing,
                freshness_line(fresh, now=now, in_progress=False),
                html.P(
                    "No failover run yet. Start a drill here or with "
                    "`quarterdeck failover drill start`.",
                    className="qd-empty",
                ),
                history,
            ]
        )
    state = "IN PROGRESS" if detail.in_progress else "COMPLETE"
    heading = html.Div(
        [
            html.H2(
                [
                    f"{detail.environment} {detail.kind}: {detail.run_key} ",
                    html.Span(
                        state,
                        className="qd-badge qd-status--"
                        + ("at-risk" if detail.in_progress else "met"),
                    ),
                ],
                className="qd-h failover-run-title",
            ),
            html.P(
                ("Live: refreshed every 2 s. " if live else "Selected run. ")
                + (detail.notes or ""),
                className="qd-subtitle",
            ),
        ]
    )
    return html.Div(
        [
            missing,
            heading,
            freshness_line(fresh, now=now, in_progress=detail.in_progress),
            html.Div([rto_clock(detail), rpo_panel(detail)], className="qd-goals"),
            html.Section(
                [
                    html.H2("Phases", className="qd-h"),
                    dcc.Graph(
                        figure=timeline_figure(detail, now=now),
                        config={"displaylogo": False, "responsive": True},
                        className="failover-timeline-graph",
                    ),
                    phase_timeline(detail),
                ],
                className="qd-section",
            ),
            html.Section(
                dcc.Graph(
                    figure=lag_figure(detail), config={"displaylogo": False, "responsive": True}
                ),
                className="qd-section",
            ),
            html.Section(
                [html.H2("Events", className="qd-h"), events_list(detail)],
                className="qd-section",
            ),
            history,
        ],
        className="failover-run",
        **data_attrs(run=detail.run_key, in_progress="true" if detail.in_progress else "false"),
    )
