"""The rows behind each metric: exactly the samples a goal's number was computed from.

`metric_rows` answers, for one registered metric id, window and params, the rows whose count is
the metric's `samples` (see each builder's note where a row weighs more than one sample), each
with a link to its source (the PR, the failover run, the decision). It calls the public frame
functions of the other query modules, so a row set and its metric cannot drift apart silently:
tests/store/test_rows.py checks the count against every goal and gate check of the demo.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from store.measures import Window
from store.models import ActionAudit, CiJobMetric, OpaDecision
from store.models.egress import ExportEvent
from store.models.policy import BundleRevision
from store.models.reliability import Incident, Postmortem
from store.queries import ci, egress, failover, policy, reliability, traffic
from store.queries.frames import as_utc

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


@dataclass
class RowsPage:
    """One page of the rows behind a metric; ``total`` counts every row of the window."""

    metric: str
    kind: str
    note: str
    columns: list[str]
    rows: list[dict[str, Any]]
    total: int
    offset: int
    limit: int
    weight: str | None = None  # a column whose sum is `samples` (rows weigh more than one)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def next_offset(self) -> int | None:
        end = self.offset + len(self.rows)
        return end if end < self.total else None


@dataclass(frozen=True)
class _Rows:
    kind: str
    note: str
    frame: pd.DataFrame
    weight: str | None = None


Builder = Callable[[Session, Window, str, dict[str, Any]], _Rows]


def _jsonable(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return as_utc(value).isoformat().replace("+00:00", "Z")
    if isinstance(value, float) and value != value:  # NaN is "no value", never the text nan
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {str(k): _jsonable(v) for k, v in zip(df.columns, row, strict=True)}
        for row in df.itertuples(index=False, name=None)
    ]


# --------------------------------------------------------------------------------------------
# One builder per metric
# --------------------------------------------------------------------------------------------


def _pr_link(df: pd.DataFrame) -> list[str | None]:
    return [u if isinstance(u, str) and u else None for u in df.get("pr_url", [])]


def lead_time_rows(
    session: Session, window: Window, params: dict[str, Any], *, period: str | None = None
) -> pd.DataFrame:
    """Per SHA with a ready preview in ``window``: lead time and its stages, slowest first."""
    pattern = params.get("preview_pattern", ci.DEFAULT_PREVIEW_PATTERN)
    df = ci.lead_time_frame(
        session, window=window, repo=params.get("repo"), preview_pattern=pattern
    )
    df = ci.lead_time_stages_frame(session, df, preview_pattern=pattern)
    df["source_url"] = _pr_link(df)
    if period:
        df.insert(0, "period", period)
    return df.sort_values("seconds", ascending=False, ignore_index=True) if len(df) else df


def _lead_time(session: Session, window: Window, agg: str, params: dict[str, Any]) -> _Rows:
    return _Rows(
        "shas",
        "One row per (PR, head SHA) whose preview became ready in the window.",
        lead_time_rows(session, window, params),
    )


def _lead_time_change(session: Session, window: Window, agg: str, params: dict[str, Any]) -> _Rows:
    baseline = Window(window.start - (window.end - window.start), window.start)
    both = pd.concat(
        [
            lead_time_rows(session, window, params, period="window"),
            lead_time_rows(session, baseline, params, period="baseline"),
        ],
        ignore_index=True,
    )
    return _Rows(
        "shas",
        "The SHAs of the window and of the baseline before it (column `period`).",
        both,
    )


def _cache_hits(session: Session, window: Window, agg: str, params: dict[str, Any]) -> _Rows:
    stmt = (
        select(
            CiJobMetric.repo,
            CiJobMetric.run_id,
            CiJobMetric.job_name,
            CiJobMetric.head_sha,
            CiJobMetric.finished_at,
            CiJobMetric.cache_hits,
            CiJobMetric.cache_lookups,
        )
        .where(CiJobMetric.finished_at >= window.start, CiJobMetric.finished_at < window.end)
        .where(CiJobMetric.cache_lookups > 0)
        .order_by(CiJobMetric.finished_at)
    )
    if params.get("repo"):
        stmt = stmt.where(CiJobMetric.repo == params["repo"])
    df = pd.DataFrame(
        [tuple(r) for r in session.execute(stmt)],
        columns=["repo", "run_id", "job", "sha", "finished_at", "cache_hits", "cache_lookups"],
    )
    df["source_url"] = [
        f"https://github.com/{r}/actions/runs/{int(i)}"
        for r, i in zip(df["repo"], df["run_id"], strict=True)
    ]
    return _Rows(
        "jobs",
        "One row per CI job that reported cache lookups; the samples are the lookups "
        "(the sum of `cache_lookups`).",
        df,
        weight="cache_lookups",
    )


def _export_events(session: Session, window: Window) -> pd.DataFrame:
    stmt = (
        select(
            ExportEvent.event_id,
            ExportEvent.export_id,
            ExportEvent.ts,
            ExportEvent.tenant,
            ExportEvent.user,
            ExportEvent.route,
            ExportEvent.status,
            ExportEvent.bytes,
            ExportEvent.token_state,
            ExportEvent.watermarked,
        )
        .where(ExportEvent.ts >= window.start, ExportEvent.ts < window.end)
        .order_by(ExportEvent.ts, ExportEvent.id)
    )
    df = pd.DataFrame(
        [tuple(r) for r in session.execute(stmt)],
        columns=[
            "event_id",
            "export_id",
            "ts",
            "tenant",
            "user",
            "route",
            "status",
            "bytes",
            "token_state",
            "watermarked",
        ],
    )
    df["served"] = [
        200 <= int(s) <= 299 and int(b or 0) > 0
        for s, b in zip(df["status"], df["bytes"], strict=True)
    ]
    df["is_5xx"] = [int(s) >= 500 for s in df["status"]]
    return df


def _coverage(session: Session, window: Window, agg: str, params: dict[str, Any]) -> _Rows:
    df = _export_events(session, window)
    routes = params.get("routes") or egress.DEFAULT_EXPORT_ROUTES
    patterns = [re.compile(str(r)) for r in routes]
    df = df[df["served"].astype(bool)].reset_index(drop=True)
    df["declared_route"] = [any(p.search(str(r)) for p in patterns) for r in df["route"]]
    df["covered"] = [
        bool(d) and t == "valid" and bool(w)
        for d, t, w in zip(df["declared_route"], df["token_state"], df["watermarked"], strict=True)
    ]
    df = df.sort_values("covered", kind="stable", ignore_index=True)
    return _Rows(
        "export_events",
        "Every served export (2xx with a body) in the window; uncovered first. Refused "
        "attempts are not samples of coverage.",
        df,
    )


def _download_5xx(session: Session, window: Window, agg: str, params: dict[str, Any]) -> _Rows:
    df = _export_events(session, window)
    df = df.sort_values("is_5xx", ascending=False, kind="stable", ignore_index=True)
    return _Rows(
        "export_events",
        "Every export download in the window (the samples); those answered 5xx first.",
        df,
    )


def _runs(column: str) -> Builder:
    def build(session: Session, window: Window, agg: str, params: dict[str, Any]) -> _Rows:
        runs = failover.runs_frame(session, window=window, environment=params.get("environment"))
        measured = runs[runs[column].notna()]
        # As the metric: the measured runs, or every run when none is measured yet.
        df = (measured if len(measured) else runs).reset_index(drop=True)
        df["source_url"] = [f"/failover?run={quote(str(k))}" for k in df["run_key"]]
        return _Rows(
            "runs",
            f"Failover runs started in the window with a measured {column.removesuffix('_s')}"
            "; the number is the latest.",
            df.iloc[::-1].reset_index(drop=True),
        )

    return build


def _replica_lag(session: Session, window: Window, agg: str, params: dict[str, Any]) -> _Rows:
    env = params.get("environment", "stage")
    lag = failover.lag_frame(
        session, environment=env, start=window.end - timedelta(minutes=15), end=window.end
    )
    if len(lag):
        latest = lag.sort_values("ts").groupby("replica").tail(1)
        lag = latest.sort_values("lag_s", ascending=False).head(1).reset_index(drop=True)
    return _Rows("lag_samples", "The latest lag sample of the most lagging replica.", lag)


def _decisions(
    session: Session, window: Window, params: dict[str, Any], *, order: str
) -> pd.DataFrame:
    stmt = select(
        OpaDecision.decision_id,
        OpaDecision.timestamp,
        OpaDecision.received_at,
        OpaDecision.instance_id,
        OpaDecision.environment,
        OpaDecision.path,
        OpaDecision.allowed,
        OpaDecision.dry_run,
    ).where(OpaDecision.timestamp >= window.start, OpaDecision.timestamp < window.end)
    if params.get("environment"):
        stmt = stmt.where(OpaDecision.environment == params["environment"])
    cols = [
        "decision_id",
        "timestamp",
        "received_at",
        "instance_id",
        "environment",
        "path",
        "allowed",
        "dry_run",
    ]
    df = pd.DataFrame([tuple(r) for r in session.execute(stmt)], columns=cols)
    df["latency_s"] = [
        (as_utc(r) - as_utc(t)).total_seconds()
        for t, r in zip(df["timestamp"], df["received_at"], strict=True)
    ]
    df["source_url"] = [f"/api/decisions?decision_id={quote(str(d))}" for d in df["decision_id"]]
    if len(df):
        df = df.sort_values(order, ascending=False, kind="stable", ignore_index=True)
    return df


def _decision_latency(session: Session, window: Window, agg: str, params: dict[str, Any]) -> _Rows:
    # The metric reads every decision of the window (no environment filter): so do the rows.
    df = _decisions(session, window, {}, order="latency_s")
    return _Rows("decisions", "Every decision made in the window, slowest to arrive first.", df)


def _dry_run(session: Session, window: Window, agg: str, params: dict[str, Any]) -> _Rows:
    df = _decisions(session, window, params, order="dry_run")
    return _Rows("decisions", "Every decision made in the window; dry-run ones first.", df)


def _drift(session: Session, window: Window, agg: str, params: dict[str, Any]) -> _Rows:
    rule = policy.StaleRule(
        intervals=float(params.get("stale_intervals", policy.StaleRule.intervals))
    )
    df = policy.drift_frame(
        session, as_of=window.end, environment=params.get("environment"), stale=rule
    )
    df = df[df["pinned_revision"].notna()]
    stale = set(df[df["stale"].astype(bool)]["instance_id"])
    live = df[~df["instance_id"].isin(stale)]
    rows = []
    for inst, group in live.groupby("instance_id", sort=True):
        bundles = list(group["bundle"])
        active = zip(bundles, group["active_revision"], strict=True)
        pinned = zip(bundles, group["pinned_revision"], strict=True)
        rows.append(
            (
                inst,
                group["environment"].iloc[0],
                bool(group["drifted"].astype(bool).any()),
                ", ".join(f"{b}@{r}" for b, r in active),
                ", ".join(f"{b}@{p}" for b, p in pinned),
                max(group["reported_at"]),
            )
        )
    out = pd.DataFrame(
        rows, columns=["instance_id", "environment", "drifted", "active", "pinned", "reported_at"]
    )
    if len(out):
        out = out.sort_values("drifted", ascending=False, kind="stable", ignore_index=True)
    return _Rows("instances", "OPA instances (not stale) reporting a pinned bundle.", out)


def _signed(session: Session, window: Window, agg: str, params: dict[str, Any]) -> _Rows:
    status = policy.latest_status_frame(session, as_of=window.end)
    status = status[status["active_revision"].notna()]
    if params.get("environment"):
        status = status[status["environment"] == params["environment"]]
    verdicts = {
        (b, r): s
        for b, r, s in session.execute(
            select(BundleRevision.bundle, BundleRevision.revision, BundleRevision.signature_status)
        )
    }
    df = status.reset_index(drop=True)
    df["signature"] = [
        verdicts.get((b, r), "unknown")
        for b, r in zip(df["bundle"], df["active_revision"], strict=True)
    ]
    return _Rows("instance_bundles", "(instance, bundle) pairs with their active revision.", df)


def _soak(session: Session, window: Window, agg: str, params: dict[str, Any]) -> _Rows:
    env = params.get("environment", "stage")
    status = policy.latest_status_frame(session, as_of=window.end)
    df = status[status["environment"] == env].reset_index(drop=True)
    return _Rows(
        "instance_bundles",
        f"The latest status of each {env} instance; the soak counts the instances.",
        df,
    )


def _policy_coverage(session: Session, window: Window, agg: str, params: dict[str, Any]) -> _Rows:
    slo = reliability.slo_frame(session, window=window)
    covered = set(params.get("policy_services") or [])
    services = sorted(set(slo["service"]))
    df = pd.DataFrame(
        [
            (
                s,
                ", ".join(sorted(slo[slo["service"] == s]["slo"].astype(str))),
                s in covered,
            )
            for s in services
        ],
        columns=["service", "slos", "covered_by_policy"],
    )
    df["source_url"] = "/reliability"
    return _Rows("services", "Services reporting SLO samples in the window.", df)


def _postmortems(session: Session, window: Window, agg: str, params: dict[str, Any]) -> _Rows:
    pms = session.execute(
        select(
            Postmortem.incident_key,
            Postmortem.generated_at,
            Postmortem.generated_by,
            Postmortem.issue_url,
        ).where(Postmortem.generated_at >= window.start, Postmortem.generated_at < window.end)
    ).all()
    incidents = session.execute(
        select(Incident.incident_key, Incident.started_at, Incident.title, Incident.severity).where(
            Incident.started_at >= window.start, Incident.started_at < window.end
        )
    ).all()
    rows = [("postmortem", k, at, by, url) for k, at, by, url in pms]
    rows += [
        ("incident", k, at, f"{sev}: {title}", "/reliability") for k, at, title, sev in incidents
    ]
    df = pd.DataFrame(rows, columns=["type", "incident_key", "at", "detail", "source_url"])
    return _Rows(
        "incidents",
        "Postmortems generated and incidents started in the window (both are samples).",
        df,
    )


def _weights(session: Session, window: Window, agg: str, params: dict[str, Any]) -> _Rows:
    df = traffic.weights_frame(session, as_of=window.end, record_name=params.get("record_name"))
    return _Rows("dns_sets", "The latest weight of each weighted set.", df)


def _approvals(session: Session, window: Window, agg: str, params: dict[str, Any]) -> _Rows:
    stmt = (
        select(
            ActionAudit.seq,
            ActionAudit.at,
            ActionAudit.actor,
            ActionAudit.action,
            ActionAudit.target,
            ActionAudit.environment,
            ActionAudit.outcome,
        )
        .where(ActionAudit.at >= window.start, ActionAudit.at < window.end)
        .order_by(ActionAudit.at, ActionAudit.seq)
    )
    if params.get("environment"):
        stmt = stmt.where(ActionAudit.environment == params["environment"])
    df = pd.DataFrame(
        [tuple(r) for r in session.execute(stmt)],
        columns=["seq", "at", "actor", "action", "target", "environment", "outcome"],
    )
    df["source_url"] = "/audit"
    return _Rows("audit_rows", "Action-audit rows in the window; approvals are counted.", df)


BUILDERS: dict[str, Builder] = {
    "actions.approvals": _approvals,
    "ci.pr_preview_lead_time": _lead_time,
    "ci.pr_preview_lead_time_change": _lead_time_change,
    "ci.cache_hit_ratio": _cache_hits,
    "exports.token_watermark_coverage": _coverage,
    "exports.download_5xx": _download_5xx,
    "failover.rto": _runs("rto_s"),
    "failover.rpo": _runs("rpo_s"),
    "failover.replica_lag": _replica_lag,
    "policy.decision_log_latency": _decision_latency,
    "policy.drift": _drift,
    "policy.signed_active_share": _signed,
    "policy.dry_run_share": _dry_run,
    "policy.stage_soak": _soak,
    "slo.error_budget_policy_coverage": _policy_coverage,
    "incidents.postmortems_generated": _postmortems,
    "traffic.dns_weight_split_deviation": _weights,
}


def metric_rows(
    session: Session,
    metric: str,
    window: Window,
    aggregation: str,
    params: dict[str, Any],
    *,
    offset: int = 0,
    limit: int = DEFAULT_LIMIT,
) -> RowsPage:
    """One page of the rows behind ``metric`` over ``window`` (KeyError: no such metric)."""
    built = BUILDERS[metric](session, window, aggregation, params)
    limit = max(1, min(limit, MAX_LIMIT))
    offset = max(0, offset)
    df = built.frame
    extra: dict[str, Any] = {}
    if built.weight is not None:
        extra["weight_sum"] = int(df[built.weight].sum()) if len(df) else 0
    return RowsPage(
        metric=metric,
        kind=built.kind,
        note=built.note,
        columns=[str(c) for c in df.columns],
        rows=_records(df.iloc[offset : offset + limit]),
        total=len(df),
        offset=offset,
        limit=limit,
        weight=built.weight,
        extra=extra,
    )


def row_count(page: RowsPage) -> int:
    """The samples a row page stands for: its rows, or the sum of its weight column."""
    return int(page.extra.get("weight_sum", page.total)) if page.weight else page.total


__all__ = ["BUILDERS", "RowsPage", "metric_rows", "row_count"]


def backlog_prs(session: Session, item_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """PRs whose title names a backlog item id (`MR-1101 …`), per item: their linked work.

    PRs arrive through the GitHub collector (`pull_request` webhooks and polling).
    """
    from sqlalchemy import or_

    from store.models import PullRequest

    found: dict[str, list[dict[str, Any]]] = {i: [] for i in item_ids}
    if not item_ids:
        return found
    stmt = select(
        PullRequest.repo,
        PullRequest.number,
        PullRequest.title,
        PullRequest.state,
        PullRequest.merged_at,
        PullRequest.html_url,
    ).where(or_(*[PullRequest.title.contains(i) for i in item_ids]))
    for repo, number, title, state, merged, url in session.execute(stmt):
        for item in item_ids:
            if re.search(rf"\b{re.escape(item)}\b", title or ""):
                found[item].append(
                    {
                        "repo": repo,
                        "number": number,
                        "title": title,
                        "state": "merged" if merged is not None else state,
                        "url": url,
                    }
                )
    return found
