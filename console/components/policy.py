"""Pure builders for Policy: the decision grid, detail, charts and tables.

Search text and API query strings are parsed next to `DecisionFilter`
(`store/queries/decision_filter.py`). Decision JSON is rendered as text children (Dash escapes
it): a `<script>` in an input stays text.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from dash import html

from console.components.html_attrs import data_attrs
from console.components.ingest import format_timestamp

MASK_MARK = "«erased by mask policy»"
LATENCY_TARGET_S = 60.0


# ------------------------------------------------------------------------------------------
# Grid and detail
# ------------------------------------------------------------------------------------------

GRID_COLUMNS: list[dict[str, Any]] = [
    {"field": "timestamp", "headerName": "Time (UTC)", "width": 190},
    {"field": "verdict", "headerName": "Verdict", "width": 140},
    {"field": "path", "headerName": "Path", "flex": 2},
    {"field": "instance_id", "headerName": "Instance", "width": 140},
    {"field": "environment", "headerName": "Env", "width": 90},
    {"field": "revisions", "headerName": "Bundle revisions", "flex": 1},
    {"field": "latency_s", "headerName": "Latency (s)", "width": 120},
    {"field": "decision_id", "headerName": "Decision id", "flex": 2},
]


def verdict_label(allowed: Any, dry_run: Any = False) -> str:
    """`allow`, `deny` or `—`, with `(dry-run)` when the decision was not enforced."""
    text = "allow" if allowed is True else "deny" if allowed is False else "—"
    return f"{text} (dry-run)" if dry_run else text


def grid_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Decision rows as the grid shows them (strings, seconds rounded)."""
    out = []
    for row in rows:
        latency = (row["received_at"] - row["timestamp"]).total_seconds()
        bundles = row.get("bundles") or {}
        out.append(
            {
                "decision_id": row["decision_id"],
                "timestamp": format_timestamp(row["timestamp"]),
                "verdict": verdict_label(row["allowed"], row.get("dry_run")),
                "path": row["path"],
                "instance_id": row["instance_id"],
                "environment": row.get("environment") or "",
                "revisions": ", ".join(f"{k}@{v}" for k, v in sorted(bundles.items())),
                "latency_s": round(latency, 1),
            }
        )
    return out


def _pointer_parts(pointer: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]


def mark_erased(document: dict[str, Any], pointers: list[Any]) -> dict[str, Any]:
    """Return a copy of ``document`` with every erased JSON pointer shown as a marker value."""
    doc: dict[str, Any] = json.loads(json.dumps(document, default=str))
    for pointer in pointers:
        if not isinstance(pointer, str) or not pointer.startswith("/"):
            continue
        parts = _pointer_parts(pointer)
        node: Any = doc
        for part in parts[:-1]:
            if isinstance(node, dict):
                node = node.setdefault(part, {})
            else:
                node = None
                break
        if isinstance(node, dict) and parts:
            node[parts[-1]] = MASK_MARK
    return doc


def decision_detail(decision: dict[str, Any] | None) -> html.Div:
    """The detail view: header facts, masked/erased pointers, pretty JSON (escaped text)."""
    if decision is None:
        return html.Div(
            html.P("Select a decision to see its input and result.", className="qd-muted")
        )
    erased = [p for p in decision.get("erased") or [] if isinstance(p, str)]
    masked = [p for p in decision.get("masked") or [] if isinstance(p, str)]
    body = mark_erased({"input": decision.get("input"), "result": decision.get("result")}, erased)
    facts = [
        ("Decision", decision["decision_id"]),
        ("Time", format_timestamp(decision["timestamp"])),
        ("Received", format_timestamp(decision["received_at"])),
        ("Verdict", verdict_label(decision.get("allowed"), decision.get("dry_run"))),
        ("Path", decision["path"]),
        ("Instance", decision["instance_id"]),
        ("Environment", decision.get("environment") or "—"),
        ("OPA", decision.get("opa_version") or "—"),
        ("Requested by", decision.get("requested_by") or "—"),
        (
            "Bundles",
            ", ".join(f"{k}@{v}" for k, v in sorted((decision.get("bundles") or {}).items()))
            or "—",
        ),
    ]
    marks = []
    if erased:
        marks.append(html.P(["Erased by the mask policy: ", html.Code(", ".join(erased))]))
    if masked:
        marks.append(html.P(["Masked (value replaced): ", html.Code(", ".join(masked))]))
    return html.Div(
        [
            html.Table(
                html.Tbody([html.Tr([html.Th(k), html.Td(str(v))]) for k, v in facts]),
                className="qd-table policy-detail-facts",
            ),
            *marks,
            html.Pre(
                json.dumps(body, indent=2, sort_keys=True, default=str, ensure_ascii=False),
                className="policy-detail-json",
                style={"whiteSpace": "pre-wrap", "maxHeight": "480px", "overflow": "auto"},
            ),
            html.Pre(
                json.dumps(decision.get("metrics") or {}, indent=2, sort_keys=True),
                className="policy-detail-metrics qd-muted",
            ),
        ],
        className="policy-detail",
        **data_attrs(decision=decision["decision_id"]),
    )


# ------------------------------------------------------------------------------------------
# Charts and tables
# ------------------------------------------------------------------------------------------


def allow_deny_figure(series: pd.DataFrame, pins: pd.DataFrame) -> go.Figure:
    """Allowed and denied decisions per day and policy path; pins as vertical annotations."""
    fig = go.Figure()
    for path, group in series.groupby("path"):
        fig.add_trace(
            go.Scatter(x=group["bucket"], y=group["allowed"], name=f"{path} allow", mode="lines")
        )
        fig.add_trace(
            go.Scatter(
                x=group["bucket"],
                y=group["denied"],
                name=f"{path} deny",
                mode="lines",
                line={"dash": "dot"},
            )
        )
    for pin in _records(pins):
        fig.add_vline(x=pin["pinned_at"], line_width=1, line_dash="dash", line_color="#888")
        fig.add_annotation(
            x=pin["pinned_at"],
            y=1,
            yref="paper",
            text=f"{pin['environment']} → {pin['bundle']}@{pin['revision']}",
            showarrow=False,
            textangle=-90,
            xanchor="right",
            yanchor="top",
            font={"size": 10},
        )
    fig.update_layout(
        height=360,
        margin={"l": 40, "r": 10, "t": 10, "b": 30},
        yaxis_title="decisions per day",
        legend={"orientation": "h", "y": -0.2},
        template="plotly_white",
    )
    return fig


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in df.to_dict("records")]


def _cell(value: Any) -> str:
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return "—"
    return str(value)


def latency_table(latency: pd.DataFrame, cadence: pd.DataFrame) -> html.Table:
    """Per instance: p50/p99 decision-log latency vs the 60 s target, default-delay warnings."""
    flags: dict[str, Any] = {r["instance_id"]: r for r in _records(cadence)}
    rows = []
    for rec in _records(latency):
        over = rec["p99_s"] is not None and rec["p99_s"] >= LATENCY_TARGET_S
        warning = ""
        seen = flags.get(rec["instance_id"])
        if seen and seen["default_delay"]:
            warning = (
                f"uploads every ~{seen['median_gap_s']:.0f} s: OPA's default 300–600 s delay; "
                "set decision_logs.reporting min/max_delay_seconds below 60"
            )
        rows.append(
            html.Tr(
                [
                    html.Td(rec["instance_id"]),
                    html.Td(f"{rec['decisions']:,}"),
                    html.Td(f"{rec['p50_s']:.1f}"),
                    html.Td(f"{rec['p99_s']:.1f}"),
                    html.Td("over" if over else "met", className="policy-latency-verdict"),
                    html.Td(warning, className="policy-latency-warning"),
                ],
                **data_attrs(instance=rec["instance_id"]),
            )
        )
    head = ["Instance", "Decisions", "p50 (s)", "p99 (s)", "vs 60 s", "Upload cadence"]
    return html.Table(
        [html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
        className="qd-table policy-latency",
    )


def _silence(seconds: Any) -> str:
    if seconds is None or pd.isna(seconds):
        return "—"
    value = float(seconds)
    if value >= 86400:
        return f"{value / 86400:.1f} d"
    return f"{value / 3600:.1f} h" if value >= 3600 else f"{value:.0f} s"


def drift_table(drift: pd.DataFrame) -> html.Div:
    """Instances × bundles: active vs pinned revision, drift flagged; stale instances apart.

    An instance is stale when it has been silent longer than N × its own reporting interval
    (StaleRule); it is listed under its own heading and never counted as drift.
    """
    records = _records(drift)
    stale_flags = [bool(r.get("stale")) for r in records]
    live = [r for r, s in zip(records, stale_flags, strict=True) if not s]
    stale = [r for r, s in zip(records, stale_flags, strict=True) if s]

    def row(r: dict[str, Any], state: str) -> html.Tr:
        return html.Tr(
            [
                html.Td(_cell(r["instance_id"])),
                html.Td(_cell(r["environment"])),
                html.Td(_cell(r["bundle"])),
                html.Td(_cell(r["active_revision"])),
                html.Td(_cell(r["pinned_revision"])),
                html.Td(state, className="policy-drift-state"),
                html.Td(_cell(r["code"])),
                html.Td(format_timestamp(r["reported_at"])),
                html.Td(f"{_silence(r.get('silent_s'))} / {_silence(r.get('interval_s'))}"),
            ],
            **data_attrs(
                instance=str(r["instance_id"]),
                drifted=str(bool(r["drifted"])).lower(),
                stale=str(state == "STALE").lower(),
            ),
        )

    head = ["Instance", "Env", "Bundle", "Active", "Pinned", "State", "Error", "Reported"]
    head.append("Silent / interval")
    parts: list[Any] = [
        html.Table(
            [
                html.Thead(html.Tr([html.Th(h) for h in head])),
                html.Tbody([row(r, "DRIFT" if r["drifted"] else "in sync") for r in live]),
            ],
            className="qd-table policy-drift",
        )
    ]
    if stale:
        parts += [
            html.H3(
                f"Stale: {len({r['instance_id'] for r in stale})} instance(s) silent beyond "
                "their reporting interval — not counted as drift",
                className="qd-subtitle policy-stale-title",
            ),
            html.Table(
                [
                    html.Thead(html.Tr([html.Th(h) for h in head])),
                    html.Tbody([row(r, "STALE") for r in stale]),
                ],
                className="qd-table policy-stale",
            ),
        ]
    return html.Div(parts)


def delivery_table(delivery: pd.DataFrame) -> html.Table:
    """Per instance: decision-log plugin state, upload errors, drops (OPA's counters), lints."""
    rows = []
    for r in _records(delivery):
        drops = f"{r['dropped_chunks']} chunk(s), {r['dropped_buffer_full']} full-buffer"
        if r["dropped_total"] != r["dropped_chunks"] + r["dropped_buffer_full"]:
            drops += f"; {r['dropped_total']} over {r['processes']} process(es)"
        rows.append(
            html.Tr(
                [
                    html.Td(_cell(r["instance_id"])),
                    html.Td(_cell(r["environment"])),
                    html.Td(_cell(r["state"])),
                    html.Td(_cell(r["code"]) if not r["message"] else str(r["message"])),
                    html.Td(drops, className="policy-delivery-drops"),
                    html.Td(
                        [html.Div(text) for text in r["lints"]] or "—",
                        className="policy-delivery-lints",
                    ),
                    html.Td(format_timestamp(r["reported_at"])),
                ],
                **data_attrs(instance=str(r["instance_id"]), lints=str(len(r["lints"]))),
            )
        )
    head = ["Instance", "Env", "Plugin", "Upload error", "Dropped", "Lints", "Reported"]
    return html.Table(
        [html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
        className="qd-table policy-delivery",
    )


def default_search_range(
    window_start: datetime, window_end: datetime, newest: datetime | None, now: datetime
) -> tuple[datetime, datetime, str]:
    """The decision search's range when the user gives no since:/until:, and its label.

    The sprint window, unless decisions newer than its end exist (a live OPA while the sprint
    lies in the past): then the last 24 h up to now, so today's decisions show.
    """
    if newest is not None and newest >= window_end and window_end <= now:
        start = now - timedelta(hours=24)
        return (
            start,
            now + timedelta(seconds=1),
            (
                f"Showing the last 24 h ({format_timestamp(start)} → now): there are decisions "
                "newer than the sprint window. Type since:/until: for another range."
            ),
        )
    return (
        window_start,
        window_end,
        (
            f"Showing the selected window ({format_timestamp(window_start)} → "
            f"{format_timestamp(window_end)}). Type since:/until: for another range."
        ),
    )


SIGNATURE_LABELS = {"verified": "signed ✓", "unsigned": "UNSIGNED", "invalid": "INVALID"}


def revisions_table(revisions: pd.DataFrame) -> html.Table:
    """Bundle revisions with their signature verdict and its reason."""
    rows = [
        html.Tr(
            [
                html.Td(str(r["bundle"])),
                html.Td(str(r["revision"])),
                html.Td(
                    SIGNATURE_LABELS.get(
                        str(r["signature_status"]), str(r["signature_status"]).upper()
                    ),
                    className="policy-signature",
                ),
                html.Td(_cell(r["signature_detail"])),
                html.Td(_cell(r["key_id"])),
                html.Td(str(r["sha256"])[:12]),
                html.Td(format_timestamp(r["added_at"])),
            ],
            **data_attrs(revision=str(r["revision"]), signature=str(r["signature_status"])),
        )
        for r in _records(revisions)
    ]
    head = ["Bundle", "Revision", "Signature", "Detail", "Key", "sha256", "Added"]
    return html.Table(
        [html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
        className="qd-table policy-revisions",
    )
