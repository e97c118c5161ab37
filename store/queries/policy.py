"""Read side for policy as code: decision-log latency, drift, signed rollout, dry-run, soak."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from store.metrics import MetricValue, Window, metric
from store.models import BundlePin, BundleRevision, OpaDecision, OpaStatusReport
from store.queries.frames import frame, percentile

DRIFT_COLUMNS = [
    "instance_id",
    "environment",
    "bundle",
    "active_revision",
    "pinned_revision",
    "drifted",
    "reported_at",
    "code",
]


def latency_frame(session: Session, *, window: Window) -> pd.DataFrame:
    """Decision-log latency per decision in ``window``.

    Columns: instance_id, timestamp (UTC), latency_s (received_at − timestamp, seconds).
    Only the three columns are read, never the decision bodies.
    """
    stmt = select(OpaDecision.instance_id, OpaDecision.timestamp, OpaDecision.received_at).where(
        OpaDecision.timestamp >= window.start, OpaDecision.timestamp < window.end
    )
    df = frame(session, stmt, ["instance_id", "timestamp", "received_at"])
    df["latency_s"] = [
        (r - t).total_seconds() for t, r in zip(df["timestamp"], df["received_at"], strict=True)
    ]
    return df.drop(columns=["received_at"])


def latency_by_instance_frame(session: Session, *, window: Window) -> pd.DataFrame:
    """Per instance: decisions, p50_s, p99_s, max_s of decision-log latency in ``window``."""
    df = latency_frame(session, window=window)
    rows = [
        (
            inst,
            len(g),
            percentile(g["latency_s"], 50),
            percentile(g["latency_s"], 99),
            float(g["latency_s"].max()),
        )
        for inst, g in df.groupby("instance_id")
    ]
    return pd.DataFrame(rows, columns=["instance_id", "decisions", "p50_s", "p99_s", "max_s"])


def _latest_pins(session: Session, as_of: datetime) -> dict[tuple[str, str], str]:
    latest = (
        select(BundlePin.bundle, BundlePin.environment, func.max(BundlePin.pinned_at).label("at"))
        .where(BundlePin.pinned_at <= as_of)
        .group_by(BundlePin.bundle, BundlePin.environment)
        .subquery()
    )
    stmt = select(BundlePin.bundle, BundlePin.environment, BundlePin.revision).join(
        latest,
        and_(
            BundlePin.bundle == latest.c.bundle,
            BundlePin.environment == latest.c.environment,
            BundlePin.pinned_at == latest.c.at,
        ),
    )
    return {(b, e): r for b, e, r in session.execute(stmt).all()}


def latest_status_frame(session: Session, *, as_of: datetime) -> pd.DataFrame:
    """Latest status report per (instance, bundle) at or before ``as_of``.

    Columns: instance_id, environment, bundle, active_revision, reported_at, code.
    """
    latest = (
        select(
            OpaStatusReport.instance_id,
            OpaStatusReport.bundle,
            func.max(OpaStatusReport.reported_at).label("at"),
        )
        .where(OpaStatusReport.reported_at <= as_of)
        .group_by(OpaStatusReport.instance_id, OpaStatusReport.bundle)
        .subquery()
    )
    stmt = select(
        OpaStatusReport.instance_id,
        OpaStatusReport.environment,
        OpaStatusReport.bundle,
        OpaStatusReport.active_revision,
        OpaStatusReport.reported_at,
        OpaStatusReport.code,
    ).join(
        latest,
        and_(
            OpaStatusReport.instance_id == latest.c.instance_id,
            OpaStatusReport.bundle == latest.c.bundle,
            OpaStatusReport.reported_at == latest.c.at,
        ),
    )
    cols = ["instance_id", "environment", "bundle", "active_revision", "reported_at", "code"]
    return frame(session, stmt, cols)


def drift_frame(
    session: Session, *, as_of: datetime, environment: str | None = None
) -> pd.DataFrame:
    """Instances × bundles with active vs pinned revision as of ``as_of``; see DRIFT_COLUMNS.

    `drifted` is True when the active revision differs from the environment's pin, or the
    instance reports an error code for the bundle. Rows without a pin are not drift.
    """
    status = latest_status_frame(session, as_of=as_of)
    if environment:
        status = status[status["environment"] == environment]
    pins = _latest_pins(session, as_of)
    rows = []
    for rec in status.itertuples(index=False):
        pinned = pins.get((str(rec.bundle), str(rec.environment or "")))
        drifted = pinned is not None and (rec.active_revision != pinned or bool(rec.code))
        rows.append(
            (
                rec.instance_id,
                rec.environment,
                rec.bundle,
                rec.active_revision,
                pinned,
                drifted,
                rec.reported_at,
                rec.code,
            )
        )
    return pd.DataFrame(rows, columns=DRIFT_COLUMNS)


@metric(
    "policy.decision_log_latency",
    unit="s",
    page="/policy",
    aggregations=("p50", "p99"),
    definition="""`received_at − timestamp` per decision-log event (how long until a decision
    is searchable here); percentile over decisions made in the window. OPA's default upload
    delay (300–600 s) makes a 60 s target impossible: such instances are flagged.""",
)
def _decision_latency(
    session: Session, window: Window, agg: str, params: dict[str, Any]
) -> MetricValue:
    df = latency_frame(session, window=window)
    q = {"p50": 50.0, "p99": 99.0}[agg]
    value = percentile(df["latency_s"], q)
    detail = f"{len(df)} decisions"
    if len(df):
        per = df.groupby("instance_id")["latency_s"].quantile(q / 100)
        worst = str(per.idxmax())
        detail += f"; slowest instance {worst} at {float(per.max()):.0f} s"
    return MetricValue(value, len(df), detail)


@metric(
    "policy.drift",
    unit="count",
    page="/policy",
    state=True,
    definition="""OPA instances (by `labels.id`, latest status) whose active revision of a
    bundle differs from the revision pinned for their environment, or that report a bundle
    error. Counted as of the end of the window.""",
)
def _drift(session: Session, window: Window, agg: str, params: dict[str, Any]) -> MetricValue:
    df = drift_frame(session, as_of=window.end, environment=params.get("environment"))
    df = df[df["pinned_revision"].notna()]
    # astype(bool): an empty object column would otherwise select columns, not rows.
    drifted = df[df["drifted"].astype(bool)]
    instances = sorted(set(drifted["instance_id"]))
    detail = "no drift" if not instances else "drifted: " + ", ".join(instances)
    return MetricValue(
        float(len(instances)) if len(df) else None, int(df["instance_id"].nunique()), detail
    )


@metric(
    "policy.signed_active_share",
    unit="ratio",
    page="/policy",
    state=True,
    definition="""Share of (instance, bundle) pairs whose active revision is in the bundle
    registry with a verified signature, as of the end of the window. Unknown, unsigned and
    invalid revisions count against it.""",
)
def _signed_share(
    session: Session, window: Window, agg: str, params: dict[str, Any]
) -> MetricValue:
    status = latest_status_frame(session, as_of=window.end)
    status = status[status["active_revision"].notna()]
    if params.get("environment"):
        status = status[status["environment"] == params["environment"]]
    if not len(status):
        return MetricValue(None, 0, "no OPA status reports")
    verdicts = {
        (b, r): s
        for b, r, s in session.execute(
            select(BundleRevision.bundle, BundleRevision.revision, BundleRevision.signature_status)
        ).all()
    }
    signed = [
        verdicts.get((b, r)) == "verified"
        for b, r in zip(status["bundle"], status["active_revision"], strict=True)
    ]
    bad = sorted(
        {
            f"{b}@{r}"
            for b, r, ok in zip(status["bundle"], status["active_revision"], signed, strict=True)
            if not ok
        }
    )
    detail = "all active revisions verified" if not bad else "not verified: " + ", ".join(bad)
    return MetricValue(sum(signed) / len(signed), len(signed), detail)


@metric(
    "policy.dry_run_share",
    unit="ratio",
    page="/policy",
    definition="""Share of decisions in the window made in dry-run (instance label
    `mode: dry-run` or a result with `dry_run: true`), optionally for one environment.""",
)
def _dry_run_share(
    session: Session, window: Window, agg: str, params: dict[str, Any]
) -> MetricValue:
    stmt = select(
        func.count(),
        func.coalesce(func.sum(func.cast(OpaDecision.dry_run, type_=_int_type())), 0),
    ).where(OpaDecision.timestamp >= window.start, OpaDecision.timestamp < window.end)
    if params.get("environment"):
        stmt = stmt.where(OpaDecision.environment == params["environment"])
    total, dry = session.execute(stmt).one()
    if not total:
        return MetricValue(None, 0, "no decisions")
    return MetricValue(dry / total, int(total), f"{dry} of {total} decisions in dry-run")


def _int_type() -> Any:
    from sqlalchemy import Integer

    return Integer()


@metric(
    "policy.stage_soak",
    unit="h",
    page="/policy",
    state=True,
    definition="""Hours the revision pinned for the soak environment (default `stage`) has been
    the active revision on every instance of that environment, as of the end of the window;
    0 while any instance still runs another revision.""",
)
def _stage_soak(session: Session, window: Window, agg: str, params: dict[str, Any]) -> MetricValue:
    env = params.get("environment", "stage")
    bundle = params.get("bundle")
    as_of = window.end
    pins = {k: v for k, v in _latest_pins(session, as_of).items() if k[1] == env}
    if bundle:
        pins = {k: v for k, v in pins.items() if k[0] == bundle}
    if not pins:
        return MetricValue(None, 0, f"no bundle pinned for {env}")
    stmt = (
        select(
            OpaStatusReport.instance_id,
            OpaStatusReport.bundle,
            OpaStatusReport.active_revision,
            OpaStatusReport.reported_at,
        )
        .where(OpaStatusReport.environment == env, OpaStatusReport.reported_at <= as_of)
        .order_by(OpaStatusReport.reported_at)
    )
    reports = frame(session, stmt, ["instance_id", "bundle", "active_revision", "reported_at"])
    reports = reports[reports["bundle"].isin([b for b, _ in pins])]
    if not len(reports):
        return MetricValue(None, 0, f"no status reports from {env}")
    since: list[datetime] = []
    for (_inst, bundle_name), group in reports.groupby(["instance_id", "bundle"]):
        pinned = pins[(str(bundle_name), env)]
        on_pin = group["active_revision"] == pinned
        if not bool(on_pin.iloc[-1]):
            return MetricValue(
                0.0, len(reports), f"{_inst} does not run {bundle_name}@{pinned} yet"
            )
        # The soak starts at the first report of the last unbroken run on the pinned revision.
        breaks = group[~on_pin]
        tail = group if breaks.empty else group[group["reported_at"] > breaks["reported_at"].max()]
        since.append(tail["reported_at"].min())
    hours = (as_of - max(since)).total_seconds() / 3600
    return MetricValue(
        hours,
        int(reports["instance_id"].nunique()),
        f"soaking since {max(since):%Y-%m-%d %H:%M} UTC",
    )
