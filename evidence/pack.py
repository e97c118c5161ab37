"""Evidence packs (seed §8): collect a sprint's proof, render it watermarked, sign it, verify it.

A pack is built in two steps so that every download is personal without re-querying the store:

1. :func:`collect_snapshot` queries the store once and returns the section data as plain JSON
   (goals, CI before/after, failover, policy bundles, export samples, error budgets and
   postmortems, the audit extract with its chain verdict). The snapshot is kept on disk and its
   SHA-256 recorded in `evidence_packs`.
2. :func:`render_pack` turns a snapshot into a zip for one export id and user: per section a
   readable HTML page (charts through a bundled `plotly.min.js`, viewable offline) with its data
   as JSON and CSV; every file carries the export id and user; `MANIFEST.json` lists each file's
   SHA-256 and `SIGNATURE.json` holds the Ed25519 signature over the manifest and the public key.

:func:`verify_pack` reports every altered, added or missing file.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import math
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from evidence.signing import fingerprint, public_key_from_text, public_raw
from store.audit import verify_chain
from store.goals import Sprint, evaluate_check, evaluate_gates, evaluate_goals
from store.models import (
    ActionAudit,
    BundlePin,
    BundleRevision,
    ExportEvent,
    FailoverEvent,
    FailoverRun,
    OpaStatusReport,
)
from store.queries.egress import export_summary_frame
from store.queries.reliability import (
    budget_frame,
    incidents_frame,
    latest_sample_at,
    postmortems_frame,
)
from store.slo import SloDefinition

MANIFEST = "MANIFEST.json"
SIGNATURE = "SIGNATURE.json"
PLOTLY_JS = "plotly.min.js"
SNAPSHOT_VERSION = 1
HTML_ROWS = 200  # rows shown per table on a page; the CSV/JSON carry all of them
EXPORT_SAMPLES = 25


class EvidenceError(ValueError):
    """A pack cannot be built or read; the message says why."""


# --------------------------------------------------------------------------------------------
# Snapshot
# --------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, datetime | pd.Timestamp):
        if pd.isna(value):
            return None
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): _jsonable(v) for k, v in row.items()} for row in df.to_dict("records")]


def _section(
    sid: str,
    title: str,
    summary: list[str],
    tables: dict[str, list[dict[str, Any]]],
    charts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {"id": sid, "title": title, "summary": summary, "tables": tables, "charts": charts or []}


def _goals_section(session: Session, sprint: Sprint, now: datetime) -> dict[str, Any]:
    goals = evaluate_goals(session, sprint, now=now, with_trend=False)
    gates = evaluate_gates(session, sprint, now=now)
    goal_rows = [
        {
            "id": r.id,
            "title": r.title,
            "epic": r.epic,
            "owner": r.owner,
            "status": r.status,
            "value": r.value,
            "unit": r.unit,
            "target": f"{r.target['op']} {r.target['value']} {r.target['unit']}",
            "samples": r.samples,
            "metric": r.metric,
            "aggregation": r.aggregation,
            "reason": r.reason,
            "definition": " ".join(r.definition.split()),
        }
        for r in goals
    ]
    gate_rows = [
        {
            "stage": g.stage,
            "ready": g.ready,
            "check": kind,
            "id": c.id,
            "title": c.title,
            "status": c.status,
            "value": c.value,
            "unit": c.unit,
            "reason": c.reason,
        }
        for g in gates
        for kind, checks in (("precondition", g.preconditions), ("verification", g.verification))
        for c in checks
    ]
    counts = pd.Series([r.status for r in goals]).value_counts()
    met = int(counts.get("met", 0))
    return _section(
        "goals",
        "Sprint goals and promotion gates",
        [
            f"{met} of {len(goals)} goals met over {sprint.window.start:%Y-%m-%d} → "
            f"{sprint.window.end:%Y-%m-%d}.",
            "Ready stages: " + (", ".join(g.stage for g in gates if g.ready) or "none") + ".",
        ],
        {"goals": _records(pd.DataFrame(goal_rows)), "gates": _records(pd.DataFrame(gate_rows))},
        [
            {
                "kind": "bar",
                "title": "Goals by status",
                "x": [str(s) for s in counts.index],
                "series": {"goals": [int(v) for v in counts.to_numpy()]},
            }
        ],
    )


def _ci_section(session: Session, sprint: Sprint, now: datetime) -> dict[str, Any]:
    rows = []
    for goal in sprint.goals:
        if not goal.metric.startswith("ci.") or goal.metric.endswith("_change"):
            continue
        before = evaluate_check(session, goal, sprint.baseline_window(), now=now, with_trend=False)
        after = evaluate_check(session, goal, sprint.window.window(), now=now, with_trend=False)
        change = (
            (after.value - before.value) / before.value * 100
            if after.value is not None and before.value
            else None
        )
        rows.append(
            {
                "goal": goal.id,
                "metric": goal.metric,
                "aggregation": goal.aggregation,
                "unit": after.unit,
                "before": before.value,
                "after": after.value,
                "change_pct": change,
                "samples_before": before.samples,
                "samples_after": after.samples,
                "status_after": after.status,
            }
        )
    df = pd.DataFrame(rows)
    summary = [
        f"{r['goal']}: {_num(r['before'])} → {_num(r['after'])} {r['unit']} "
        f"({r['samples_before']} → {r['samples_after']} samples)"
        for r in rows
    ] or ["No CI goals in this sprint."]
    return _section(
        "ci",
        "CI lead time before/after",
        [f"Baseline {sprint.baseline_window().start:%Y-%m-%d} vs sprint window.", *summary],
        {"before_after": _records(df)},
        [
            {
                "kind": "bar",
                "title": "PR→preview lead time, baseline vs sprint",
                "x": [r["goal"] for r in rows],
                "series": {
                    "before": [r["before"] for r in rows],
                    "after": [r["after"] for r in rows],
                },
            }
        ]
        if rows
        else [],
    )


def _failover_section(session: Session, sprint: Sprint) -> dict[str, Any]:
    window = sprint.window.window()
    runs = session.execute(
        select(
            FailoverRun.run_key,
            FailoverRun.environment,
            FailoverRun.kind,
            FailoverRun.source,
            FailoverRun.started_at,
            FailoverRun.ended_at,
            FailoverRun.notes,
        )
        .where(FailoverRun.started_at >= window.start, FailoverRun.started_at < window.end)
        .order_by(FailoverRun.started_at)
    ).all()
    keys = [r.run_key for r in runs]
    events = session.execute(
        select(
            FailoverEvent.run_key,
            FailoverEvent.at,
            FailoverEvent.phase,
            FailoverEvent.source,
            FailoverEvent.message,
        )
        .where(FailoverEvent.run_key.in_(keys))
        .order_by(FailoverEvent.at)
    ).all()
    cols = ["run_key", "environment", "kind", "source", "started_at", "ended_at", "notes"]
    run_df = pd.DataFrame([tuple(r) for r in runs], columns=cols)
    ev_df = pd.DataFrame(
        [tuple(e) for e in events], columns=["run_key", "at", "phase", "source", "message"]
    )
    proof = ev_df[ev_df["phase"].isin(["promoted", "writable"])]
    starts = {r.run_key: r.started_at for r in runs}
    chart_series: dict[str, list[Any]] = {}
    for phase in ("promoted", "writable", "traffic_shifted", "complete"):
        chart_series[phase] = [
            next(
                (
                    (e.at - starts[k]).total_seconds() / 60
                    for e in events
                    if e.run_key == k and e.phase == phase
                ),
                None,
            )
            for k in keys
        ]
    return _section(
        "failover",
        "Failover rehearsals: timestamps, logs, promotion proof",
        [f"{len(runs)} failover run(s) in the sprint window; {len(events)} logged events."]
        + [
            f"{e.run_key}: {e.phase} at {_jsonable(e.at)} — {e.message}"
            for e in proof.itertuples(index=False)
        ],
        {
            "runs": _records(run_df),
            "events": _records(ev_df),
            "promotion_proof": _records(proof),
        },
        [
            {
                "kind": "bar",
                "title": "Minutes from start to each phase",
                "x": keys,
                "series": chart_series,
            }
        ]
        if keys
        else [],
    )


def _policy_section(session: Session, sprint: Sprint) -> dict[str, Any]:
    end = sprint.window.window().end
    revisions = pd.DataFrame(
        [
            tuple(r)
            for r in session.execute(
                select(
                    BundleRevision.bundle,
                    BundleRevision.revision,
                    BundleRevision.sha256,
                    BundleRevision.signature_status,
                    BundleRevision.key_id,
                    BundleRevision.signature_detail,
                    BundleRevision.added_at,
                ).order_by(BundleRevision.bundle, BundleRevision.added_at)
            )
        ],
        columns=["bundle", "revision", "sha256", "signature", "key_id", "detail", "added_at"],
    )
    pins = pd.DataFrame(
        [
            tuple(r)
            for r in session.execute(
                select(
                    BundlePin.bundle,
                    BundlePin.environment,
                    BundlePin.revision,
                    BundlePin.pinned_at,
                    BundlePin.pinned_by,
                    BundlePin.reason,
                )
                .where(BundlePin.pinned_at < end)
                .order_by(BundlePin.pinned_at)
            )
        ],
        columns=["bundle", "environment", "revision", "pinned_at", "pinned_by", "reason"],
    )
    latest = (
        select(
            OpaStatusReport.instance_id,
            OpaStatusReport.bundle,
            func.max(OpaStatusReport.reported_at).label("at"),
        )
        .where(OpaStatusReport.reported_at < end)
        .group_by(OpaStatusReport.instance_id, OpaStatusReport.bundle)
        .subquery()
    )
    pinned: dict[tuple[str, str], str] = {
        (str(p.bundle), str(p.environment)): str(p.revision) for p in pins.itertuples(index=False)
    }  # later pins overwrite earlier ones: pins are ordered by time
    status_rows: list[dict[str, Any]] = []
    for inst, env, bundle, active, at in session.execute(
        select(
            OpaStatusReport.instance_id,
            OpaStatusReport.environment,
            OpaStatusReport.bundle,
            OpaStatusReport.active_revision,
            OpaStatusReport.reported_at,
        ).join(
            latest,
            (latest.c.instance_id == OpaStatusReport.instance_id)
            & (latest.c.bundle == OpaStatusReport.bundle)
            & (latest.c.at == OpaStatusReport.reported_at),
        )
    ):
        pin = pinned.get((bundle, env or ""))
        status_rows.append(
            {
                "instance_id": inst,
                "environment": env,
                "bundle": bundle,
                "active_revision": active,
                "reported_at": at,
                "pinned_revision": pin,
                "drift": bool(pin and active != pin),
            }
        )
    status = pd.DataFrame(
        status_rows,
        columns=[
            "instance_id",
            "environment",
            "bundle",
            "active_revision",
            "reported_at",
            "pinned_revision",
            "drift",
        ],
    ).sort_values("instance_id")
    drifting = int(status["drift"].sum()) if not status.empty else 0
    unsigned = int((revisions["signature"] != "verified").sum()) if not revisions.empty else 0
    return _section(
        "policy",
        "Policy bundles: signatures, versions per environment, pins and drift",
        [
            f"{len(revisions)} bundle revision(s), {unsigned} not verified.",
            f"{len(status)} OPA instance(s) reporting; {drifting} drifting from their pin.",
        ],
        {
            "revisions": _records(revisions),
            "versions_by_instance": _records(status),
            "pin_history": _records(pins),
        },
    )


def _exports_section(session: Session, sprint: Sprint) -> dict[str, Any]:
    window = sprint.window.window()
    summary = export_summary_frame(session, window=window)
    cols = [
        ExportEvent.event_id,
        ExportEvent.export_id,
        ExportEvent.ts,
        ExportEvent.user,
        ExportEvent.tenant,
        ExportEvent.route,
        ExportEvent.status,
        ExportEvent.token_state,
        ExportEvent.token_scope,
        ExportEvent.watermarked,
    ]
    names = [c.key for c in cols]
    in_window = (ExportEvent.ts >= window.start) & (ExportEvent.ts < window.end)
    covered = (ExportEvent.token_state == "valid") & ExportEvent.watermarked.is_(True)  # noqa: S105
    samples: list[Any] = []
    for condition in (covered, ~covered):
        samples.extend(
            session.execute(
                select(*cols)
                .where(in_window, condition)
                .order_by(ExportEvent.ts)
                .limit(EXPORT_SAMPLES)
            ).all()
        )
    df = pd.DataFrame([tuple(s) for s in samples], columns=names)
    df["X-Export-User"] = [
        u if w else None for u, w in zip(df["user"], df["watermarked"], strict=True)
    ]
    df["X-Export-Id"] = [
        e if w else None for e, w in zip(df["export_id"], df["watermarked"], strict=True)
    ]
    df["X-Export-Timestamp"] = [
        _jsonable(t) if w else None for t, w in zip(df["ts"], df["watermarked"], strict=True)
    ]
    df["token_claims"] = [
        json.dumps({"sub": u, "scope": s}) if st != "missing" else None
        for u, s, st in zip(df["user"], df["token_scope"], df["token_state"], strict=True)
    ]
    events = int(summary["events"].sum()) if not summary.empty else 0
    ok = int(summary["covered"].sum()) if not summary.empty else 0
    tenants = summary.sort_values("tenant") if not summary.empty else summary
    return _section(
        "exports",
        "Export samples: watermark headers and token claims",
        [
            f"{ok} of {events} export events carried a valid token and the watermark headers "
            f"({ok / events * 100:.2f} %)."
            if events
            else "No export events in the sprint window.",
            f"{int(summary['r429'].sum()) if events else 0} rate-limited (429), "
            f"{int(summary['r5xx'].sum()) if events else 0} answered 5xx.",
        ],
        {"per_tenant": _records(summary), "samples": _records(df)},
        [
            {
                "kind": "bar",
                "title": "Token + watermark coverage per tenant (%)",
                "x": [str(t) for t in tenants["tenant"]],
                "series": {
                    "coverage %": [
                        c / e * 100 if e else None
                        for c, e in zip(tenants["covered"], tenants["events"], strict=True)
                    ]
                },
            }
        ]
        if events
        else [],
    )


def _reliability_section(
    session: Session, sprint: Sprint, slos: Sequence[SloDefinition]
) -> dict[str, Any]:
    window = sprint.window.window()
    # As of the newest sample in the window, as the Reliability page reads it: the window's end
    # itself would cut the last step off the 5-minute burn.
    latest = latest_sample_at(session, before=window.end)
    as_of = latest if latest is not None and latest >= window.start else window.end
    budgets = budget_frame(session, list(slos), as_of=as_of)
    budgets.insert(0, "as_of", as_of)
    incidents = incidents_frame(session, window=window)
    pms = postmortems_frame(session)
    items = [
        {
            "incident_key": pm["incident_key"],
            "issue_url": pm["issue_url"],
            "item": item.get("text") if isinstance(item, dict) else str(item),
            "done": bool(item.get("done")) if isinstance(item, dict) else False,
        }
        for pm in pms.to_dict("records")
        for item in pm["action_items"] or []
    ]
    pm_rows = pms.drop(columns=["action_items"])
    return _section(
        "postmortems",
        "Error budgets, incidents, postmortem links and action items",
        [
            f"{len(incidents)} incident(s) in the sprint window; {len(pms)} postmortem(s).",
            *(
                f"{r['incident_key']}: {r['issue_url'] or 'no issue link'} "
                f"({r['open_items']} open action item(s))"
                for r in pms.to_dict("records")
            ),
        ],
        {
            "error_budgets": _records(budgets),
            "incidents": _records(incidents),
            "postmortems": _records(pm_rows),
            "action_items": items,
        },
        [
            {
                "kind": "bar",
                "title": "Error budget remaining (%) at the window's last SLO sample",
                "x": [f"{s}/{n}" for s, n in zip(budgets["service"], budgets["slo"], strict=True)],
                "series": {
                    "remaining %": [
                        None if v is None or pd.isna(v) else v * 100
                        for v in budgets["budget_remaining"]
                    ]
                },
            }
        ]
        if not budgets.empty
        else [],
    )


def _audit_section(session: Session, sprint: Sprint) -> dict[str, Any]:
    window = sprint.window.window()
    rows = session.execute(
        select(
            ActionAudit.seq,
            ActionAudit.at,
            ActionAudit.actor,
            ActionAudit.action,
            ActionAudit.target,
            ActionAudit.environment,
            ActionAudit.outcome,
            ActionAudit.prev_hash,
            ActionAudit.row_hash,
        )
        .where(ActionAudit.at >= window.start, ActionAudit.at < window.end)
        .order_by(ActionAudit.seq)
    ).all()
    cols = ["seq", "at", "actor", "action", "target", "environment", "outcome"]
    df = pd.DataFrame([tuple(r) for r in rows], columns=[*cols, "prev_hash", "row_hash"])
    verdict = verify_chain(session)
    proof = verdict.as_dict()
    proof["head_hash"] = df["row_hash"].iloc[-1] if not df.empty else None
    return _section(
        "audit",
        "Audit extract and hash-chain proof",
        [
            f"{len(df)} audit row(s) in the sprint window.",
            f"Whole chain verified: {verdict.rows} row(s), "
            + ("intact." if verdict.ok else f"BROKEN — {verdict.problem}"),
        ],
        {"audit": _records(df), "chain_proof": [_jsonable(proof)]},
    )


def collect_snapshot(
    session: Session,
    sprint: Sprint,
    *,
    slos: Sequence[SloDefinition],
    now: datetime,
) -> dict[str, Any]:
    """Query everything a pack shows, once, as plain JSON data (see module docstring)."""
    window = sprint.window.window()
    baseline = sprint.baseline_window()
    return {
        "version": SNAPSHOT_VERSION,
        "sprint": sprint.slug,
        "title": sprint.title,
        "window": {"start": _jsonable(window.start), "end": _jsonable(window.end)},
        "baseline": {"start": _jsonable(baseline.start), "end": _jsonable(baseline.end)},
        "collected_at": _jsonable(now),
        "sections": [
            _goals_section(session, sprint, now),
            _ci_section(session, sprint, now),
            _failover_section(session, sprint),
            _policy_section(session, sprint),
            _exports_section(session, sprint),
            _reliability_section(session, sprint, slos),
            _audit_section(session, sprint),
        ],
    }


def snapshot_bytes(snapshot: Mapping[str, Any]) -> bytes:
    """The canonical bytes of a snapshot (what its recorded SHA-256 is over)."""
    return json.dumps(snapshot, sort_keys=True, separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Watermark:
    """Who a pack was exported to: written into every file and the response headers."""

    export_id: str
    user: str
    exported_at: datetime

    def as_dict(self) -> dict[str, str]:
        return {
            "export_id": self.export_id,
            "user": self.user,
            "exported_at": str(_jsonable(self.exported_at)),
        }

    def line(self) -> str:
        d = self.as_dict()
        return f"Quarterdeck evidence export {d['export_id']} for {d['user']} at {d['exported_at']}"


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _csv(rows: list[dict[str, Any]], mark: Watermark) -> bytes:
    out = io.StringIO()
    # The watermark is a comment line: `pandas.read_csv(comment="#")` and most tools skip it.
    out.write(f"# {mark.line()}\n")
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                k: json.dumps(v) if isinstance(v, dict | list) else ("" if v is None else v)
                for k, v in row.items()
            }
        )
    return out.getvalue().encode()


def _figure(chart: Mapping[str, Any]) -> str:
    fig = go.Figure()
    for name, values in chart["series"].items():
        fig.add_bar(name=name, x=chart["x"], y=values)
    fig.update_layout(
        title=chart["title"],
        barmode="group",
        height=320,
        margin={"l": 40, "r": 20, "t": 50, "b": 40},
        template="plotly_white",
    )
    return str(fig.to_html(full_html=False, include_plotlyjs=False, config={"staticPlot": False}))


_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#1f2937}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:12px}
th,td{border:1px solid #d1d5db;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f4f6}.wm{color:#6b7280;font-size:12px;border-top:1px solid #d1d5db;
margin-top:2rem;padding-top:.5rem}nav a{margin-right:1rem}
"""


def _page(title: str, body: str, mark: Watermark, *, charts: bool) -> bytes:
    script = f'<script src="{PLOTLY_JS}"></script>' if charts else ""
    wm = html.escape(mark.line())
    meta = "".join(
        f'<meta name="x-export-{k.replace("_", "-")}" content="{html.escape(v)}">'
        for k, v in mark.as_dict().items()
    )
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<!-- {wm} -->{meta}<title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style>{script}</head><body>"
        f"<nav><a href='index.html'>Evidence index</a></nav>{body}"
        f"<p class='wm'>{wm}</p></body></html>"
    ).encode()


def _table_html(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p><em>No rows.</em></p>"
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(_link_or_text(row.get(c)), quote=False)}</td>" for c in columns
        )
        + "</tr>"
        for row in rows[:HTML_ROWS]
    )
    more = (
        f"<p>{len(rows) - HTML_ROWS} more row(s) in the CSV.</p>" if len(rows) > HTML_ROWS else ""
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def _link_or_text(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value)
    return _num(value)


def render_files(snapshot: Mapping[str, Any], mark: Watermark) -> dict[str, bytes]:
    """Every file of a pack except the manifest and signature, watermarked for ``mark``."""
    files: dict[str, bytes] = {}
    index_items = []
    any_charts = False
    for section in snapshot["sections"]:
        sid = section["id"]
        parts = [f"<h1>{html.escape(section['title'])}</h1>"]
        parts.append(
            "<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in section["summary"]) + "</ul>"
        )
        for chart in section["charts"]:
            parts.append(_figure(chart))
            any_charts = True
        for name, rows in section["tables"].items():
            csv_name = f"{sid}-{name}.csv"
            files[csv_name] = _csv(rows, mark)
            parts.append(
                f"<h2>{html.escape(name.replace('_', ' '))}</h2>"
                f"<p>Data: <a href='{csv_name}'>{csv_name}</a>, <a href='{sid}.json'>{sid}.json</a>"
                f"</p>{_table_html(rows)}"
            )
        files[f"{sid}.json"] = json.dumps(
            {"watermark": mark.as_dict(), "sprint": snapshot["sprint"], **section},
            indent=1,
            sort_keys=True,
        ).encode()
        files[f"{sid}.html"] = _page(
            section["title"], "".join(parts), mark, charts=bool(section["charts"])
        )
        index_items.append(
            f"<li><a href='{sid}.html'>{html.escape(section['title'])}</a> — "
            f"{html.escape(section['summary'][0] if section['summary'] else '')}</li>"
        )
    window = snapshot["window"]
    index = (
        f"<h1>{html.escape(snapshot['title'])} — acceptance evidence</h1>"
        f"<p>Sprint window {html.escape(window['start'])} → {html.escape(window['end'])}; "
        f"data collected {html.escape(snapshot['collected_at'])}.</p>"
        f"<ul>{''.join(index_items)}</ul>"
        f"<p>Integrity: <code>{MANIFEST}</code> lists the SHA-256 of every file and "
        f"<code>{SIGNATURE}</code> signs it (Ed25519). Check with "
        f"<code>quarterdeck evidence verify pack.zip</code>.</p>"
    )
    files["index.html"] = _page("Evidence index", index, mark, charts=False)
    if any_charts:
        files[PLOTLY_JS] = f"/* {mark.line()} */\n".encode() + _plotly_js()
    return files


_PLOTLY_CACHE: list[bytes] = []


def _plotly_js() -> bytes:
    if not _PLOTLY_CACHE:
        from plotly.offline import get_plotlyjs

        _PLOTLY_CACHE.append(get_plotlyjs().encode())
    return _PLOTLY_CACHE[0]


def render_pack(
    snapshot: Mapping[str, Any],
    *,
    mark: Watermark,
    key: Ed25519PrivateKey,
    demo_key: bool = False,
    pack_id: str | None = None,
) -> bytes:
    """Render ``snapshot`` as a signed zip for ``mark`` (see module docstring)."""
    files = render_files(snapshot, mark)
    manifest = {
        "format": "quarterdeck-evidence/1",
        "sprint": snapshot["sprint"],
        "pack_id": pack_id,
        "snapshot_sha256": hashlib.sha256(snapshot_bytes(snapshot)).hexdigest(),
        "watermark": mark.as_dict(),
        "files": {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            for name, data in sorted(files.items())
        },
    }
    manifest_bytes = json.dumps(manifest, indent=1, sort_keys=True).encode()
    public = key.public_key()
    signature = {
        "algorithm": "Ed25519",
        "signed_file": MANIFEST,
        "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
        "public_key": _b64(public_raw(public)),
        "key_fingerprint": fingerprint(public),
        "demo_key": demo_key,
        "signature": _b64(key.sign(manifest_bytes)),
        "watermark": mark.as_dict(),
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name, data in sorted(files.items()):
            zf.writestr(name, data)
        zf.writestr(MANIFEST, manifest_bytes)
        zf.writestr(SIGNATURE, json.dumps(signature, indent=1, sort_keys=True).encode())
    return out.getvalue()


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """What `evidence verify` found: ok, the problems (each naming a file), and who signed."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    files: int = 0
    key_fingerprint: str | None = None
    demo_key: bool = False
    watermark: dict[str, Any] = field(default_factory=dict)


def _read_all(zf: zipfile.ZipFile) -> tuple[dict[str, bytes], list[str]]:
    contents: dict[str, bytes] = {}
    problems: list[str] = []
    for name in zf.namelist():
        try:
            contents[name] = zf.read(name)
        except zipfile.BadZipFile as exc:
            problems.append(f"altered: {name} (the zip's checksum does not match: {exc})")
    return contents, problems


def verify_pack(source: Path | bytes, *, public_key: str | None = None) -> Verdict:
    """Check a pack's signature and every file against its manifest.

    With ``public_key`` (base64 or PEM) the pack must be signed by that key; without it the key
    inside the pack is used and its fingerprint reported, to be compared with the published one.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (OSError, zipfile.BadZipFile) as exc:
        return Verdict(False, [f"not a readable zip: {exc}"])
    with zf:
        contents, problems = _read_all(zf)
    if MANIFEST not in contents:
        return Verdict(False, [*problems, f"missing: {MANIFEST}"])
    if SIGNATURE not in contents:
        return Verdict(False, [*problems, f"missing: {SIGNATURE}"])
    manifest_bytes = contents[MANIFEST]
    try:
        signature = json.loads(contents[SIGNATURE])
        import base64

        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(signature["public_key"]))
        sig = base64.b64decode(signature["signature"])
    except (ValueError, KeyError, TypeError) as exc:
        return Verdict(False, [*problems, f"altered: {SIGNATURE} (unreadable: {exc})"])
    verdict = Verdict(
        ok=False,
        key_fingerprint=fingerprint(key),
        demo_key=bool(signature.get("demo_key")),
        watermark=signature.get("watermark") or {},
    )
    if public_key:
        expected = public_key_from_text(public_key)
        if public_raw(expected) != public_raw(key):
            problems.append(
                f"{SIGNATURE}: signed by {fingerprint(key)}, expected {fingerprint(expected)}"
            )
    try:
        key.verify(sig, manifest_bytes)
    except InvalidSignature:
        if hashlib.sha256(manifest_bytes).hexdigest() != signature.get("manifest_sha256"):
            problems.append(f"altered: {MANIFEST} (its signature does not match)")
        else:
            problems.append(f"altered: {SIGNATURE} (the signature does not verify)")
        verdict.problems = problems
        return verdict
    manifest = json.loads(manifest_bytes)
    listed: dict[str, Any] = manifest.get("files") or {}
    for name, entry in sorted(listed.items()):
        if name not in contents:
            if not any(p.endswith(f": {name}") or f" {name} " in p for p in problems):
                problems.append(f"missing: {name}")
            continue
        if hashlib.sha256(contents[name]).hexdigest() != entry.get("sha256"):
            problems.append(f"altered: {name} (SHA-256 differs from the manifest)")
    for name in sorted(set(contents) - set(listed) - {MANIFEST, SIGNATURE}):
        problems.append(f"added: {name} (not in the manifest)")
    verdict.files = len(listed)
    verdict.problems = problems
    verdict.ok = not problems
    return verdict


def iter_problem_files(problems: Iterable[str]) -> list[str]:
    """The file names the problems mention (`altered: x (…)` → `x`)."""
    names = []
    for problem in problems:
        head = problem.split(" (", 1)[0]
        if ": " in head:
            names.append(head.split(": ", 1)[1])
    return names
