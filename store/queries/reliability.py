"""Read side for reliability: error budgets and burn rates, incidents, timelines, postmortems."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from store.measures import MetricValue, Window
from store.models import (
    ActionAudit,
    BundlePin,
    DeploymentStatus,
    DnsWeightObservation,
    FailoverEvent,
    Incident,
    Postmortem,
    SloSample,
)
from store.models.reliability import IncidentAlert
from store.queries.daily import grouped, window_index, within
from store.queries.frames import as_utc, frame
from store.slo import (
    BURN_WINDOWS,
    WINDOW_PAIRS,
    BudgetStatus,
    SloDefinition,
    evaluate_budget,
    format_duration,
)


def slo_frame(session: Session, *, window: Window) -> pd.DataFrame:
    """Per (service, slo) over ``window``: good, total, error_ratio."""
    stmt = (
        select(
            SloSample.service, SloSample.slo, func.sum(SloSample.good), func.sum(SloSample.total)
        )
        .where(SloSample.ts >= window.start, SloSample.ts < window.end)
        .group_by(SloSample.service, SloSample.slo)
    )
    df = frame(session, stmt, ["service", "slo", "good", "total"])
    df["error_ratio"] = (1 - df["good"] / df["total"].where(df["total"] > 0)).astype(float)
    return df


def incidents_frame(session: Session, *, window: Window) -> pd.DataFrame:
    """Incidents overlapping ``window`` with their postmortem count.

    Columns: incident_key, title, severity, service, started_at, resolved_at, postmortems.
    """
    pms = (
        select(Postmortem.incident_key, func.count().label("n"))
        .group_by(Postmortem.incident_key)
        .subquery()
    )
    stmt = (
        select(
            Incident.incident_key,
            Incident.title,
            Incident.severity,
            Incident.service,
            Incident.started_at,
            Incident.resolved_at,
            func.coalesce(pms.c.n, 0),
        )
        .outerjoin(pms, pms.c.incident_key == Incident.incident_key)
        .where(Incident.started_at < window.end)
        .where((Incident.resolved_at.is_(None)) | (Incident.resolved_at >= window.start))
        .order_by(Incident.started_at)
    )
    cols = [
        "incident_key",
        "title",
        "severity",
        "service",
        "started_at",
        "resolved_at",
        "postmortems",
    ]
    return frame(session, stmt, cols)


def _policy_coverage(
    session: Session, window: Window, agg: str, params: dict[str, Any]
) -> MetricValue:
    return _policy_coverage_value(set(slo_frame(session, window=window)["service"]), params)


def _policy_coverage_daily(
    session: Session, windows: Sequence[Window], agg: str, params: dict[str, Any]
) -> list[MetricValue]:
    """``slo.error_budget_policy_coverage`` per consecutive window in one grouped statement."""
    index = window_index(SloSample.ts, windows)
    stmt = (
        select(index, SloSample.service)
        .where(within(SloSample.ts, windows))
        .group_by(index, SloSample.service)
    )
    services: list[set[str]] = [set() for _ in windows]
    for i, service in session.execute(stmt).all():
        services[int(i)].add(service)
    return [_policy_coverage_value(found, params) for found in services]


def _policy_coverage_value(services: set[str], params: dict[str, Any]) -> MetricValue:
    if not services:
        return MetricValue(None, 0, "no SLO samples")
    covered = services & set(params.get("policy_services") or [])
    missing = sorted(services - covered)
    detail = f"{len(covered)} of {len(services)} services" + (
        f"; not covered: {', '.join(missing)}" if missing else ""
    )
    return MetricValue(len(covered) / len(services), len(services), detail)


def _postmortems(session: Session, window: Window, agg: str, params: dict[str, Any]) -> MetricValue:
    count = (
        session.scalar(
            select(func.count()).where(
                Postmortem.generated_at >= window.start, Postmortem.generated_at < window.end
            )
        )
        or 0
    )
    incidents = (
        session.scalar(
            select(func.count()).where(
                Incident.started_at >= window.start, Incident.started_at < window.end
            )
        )
        or 0
    )
    return _postmortems_value(int(count), int(incidents))


def _postmortems_value(count: int, incidents: int) -> MetricValue:
    if not count and not incidents:
        return MetricValue(None, 0, "no incidents and no postmortems recorded")
    return MetricValue(
        float(count), count + incidents, f"{count} postmortem(s), {incidents} incident(s)"
    )


def _postmortems_daily(
    session: Session, windows: Sequence[Window], agg: str, params: dict[str, Any]
) -> list[MetricValue]:
    """``incidents.postmortems_generated`` per consecutive window: postmortems and incidents,
    one grouped statement each."""
    counts = []
    for column in (Postmortem.generated_at, Incident.started_at):
        index = window_index(column, windows)
        stmt = select(index, func.count()).where(within(column, windows)).group_by(index)
        found = grouped(session, stmt, windows, ["n"])
        counts.append([0 if r is None else int(r["n"]) for r in found])
    return [_postmortems_value(pm, inc) for pm, inc in zip(*counts, strict=True)]


# --------------------------------------------------------------------------------------------
# Error budgets and burn rates
# --------------------------------------------------------------------------------------------


def window_sums(
    session: Session, slo: SloDefinition, *, as_of: datetime
) -> tuple[int, dict[timedelta, tuple[float, float]]]:
    """(samples in the SLO window, {window: (good, total)}) for windows ending at ``as_of``.

    A sample covers the step ending at its `ts`, so a window (as_of − w, as_of] takes the samples
    with `ts` in it. One query with a conditional sum per window.
    """
    windows = sorted({slo.window_delta, *BURN_WINDOWS})
    longest = windows[-1]
    cols: list[Any] = [func.count()]
    for w in windows:
        inside = SloSample.ts > as_of - w
        cols.append(func.coalesce(func.sum(case((inside, SloSample.good), else_=0.0)), 0.0))
        cols.append(func.coalesce(func.sum(case((inside, SloSample.total), else_=0.0)), 0.0))
    row = session.execute(
        select(*cols).where(
            SloSample.service == slo.service,
            SloSample.slo == slo.slo,
            SloSample.ts > as_of - longest,
            SloSample.ts <= as_of,
        )
    ).one()
    sums = {w: (float(row[1 + 2 * i]), float(row[2 + 2 * i])) for i, w in enumerate(windows)}
    return int(row[0]), sums


def budget_status(session: Session, slo: SloDefinition, *, as_of: datetime) -> BudgetStatus:
    """Budget remaining, burn rates, firing alerts and policy state of ``slo`` at ``as_of``."""
    samples, sums = window_sums(session, slo, as_of=as_of)
    status = evaluate_budget(slo, sums=sums, samples=samples)
    if status.no_data:
        # The SLO's no-data policy decides: fail closed (freeze) or stay normal, saying which.
        if slo.policy.no_data == "freeze":
            status.state = "freeze"
            status.reasons = [
                f"no SLO samples in the {slo.window} window: the no-data policy is freeze"
            ]
        else:
            status.state = "normal"
            status.reasons = []
    return status


def policy_text(slo: SloDefinition) -> str:
    """The SLO's error-budget policy thresholds in words."""
    alerts = " or ".join(f"a {s} burn alert" for s in slo.policy.freeze_on)
    text = f"freeze when budget left < {slo.policy.freeze_below_remaining:g} %"
    return f"{text} or {alerts} fires" if alerts else text


def budget_frame(session: Session, slos: list[SloDefinition], *, as_of: datetime) -> pd.DataFrame:
    """One row per SLO at ``as_of``.

    Columns: service, slo, objective (%), window, samples, error_ratio, budget_remaining (ratio),
    burn_5m, burn_30m, burn_1h, burn_6h, burn_3d, alerts (firing pair labels), tte_s (seconds to
    exhaustion at the 1 h burn; NaN if not burning), state (normal|freeze|no_data), reason,
    policy (the freeze thresholds in words).
    """
    rows = []
    for slo in slos:
        st = budget_status(session, slo, as_of=as_of)
        rows.append(
            {
                "service": slo.service,
                "slo": slo.slo,
                "objective": slo.objective,
                "window": slo.window,
                "samples": st.samples,
                "error_ratio": st.error_ratio,
                "budget_remaining": st.budget_remaining,
                **{f"burn_{format_duration(w)}": st.burn[w] for w in BURN_WINDOWS},
                "alerts": ", ".join(f"{p.pair.severity} {p.pair.label}" for p in st.firing),
                "tte_s": st.time_to_exhaustion.total_seconds()
                if st.time_to_exhaustion is not None
                else None,
                "state": "no_data" if st.no_data and st.state != "freeze" else st.state,
                "reason": st.reason or ("no SLO samples in the window" if st.no_data else ""),
                "policy": policy_text(slo),
            }
        )
    columns = [
        "service",
        "slo",
        "objective",
        "window",
        "samples",
        "error_ratio",
        "budget_remaining",
        *(f"burn_{format_duration(w)}" for w in BURN_WINDOWS),
        "alerts",
        "tte_s",
        "state",
        "reason",
        "policy",
    ]
    return pd.DataFrame(rows, columns=columns)


def burn_frame(session: Session, slo: SloDefinition, *, window: Window) -> pd.DataFrame:
    """Burn rates over time for one SLO inside ``window`` (samples read once, rolled in pandas).

    Columns: ts, error_ratio (per step), burn_5m, burn_1h, burn_30m, burn_6h (rolling, ×budget).
    """
    lead = max(BURN_WINDOWS[:-1])  # the 3 d window would need 3 d of lead-in; charts omit it
    stmt = (
        select(SloSample.ts, SloSample.good, SloSample.total)
        .where(
            SloSample.service == slo.service,
            SloSample.slo == slo.slo,
            SloSample.ts > window.start - lead,
            SloSample.ts <= window.end,
        )
        .order_by(SloSample.ts)
    )
    df = frame(session, stmt, ["ts", "good", "total"])
    columns = ["ts", "error_ratio", "burn_5m", "burn_30m", "burn_1h", "burn_6h"]
    if df.empty:
        return pd.DataFrame(columns=columns)
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    df = df.set_index("ts")
    df["bad"] = (df["total"] - df["good"]).clip(lower=0)
    df["error_ratio"] = df["bad"] / df["total"].where(df["total"] > 0)
    for w in (timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=1), timedelta(hours=6)):
        rolled = df[["bad", "total"]].rolling(w).sum()
        df[f"burn_{format_duration(w)}"] = (
            rolled["bad"] / rolled["total"].where(rolled["total"] > 0) / slo.budget
        )
    df = df.reset_index()
    df = df[df["ts"] >= pd.Timestamp(window.start)]
    return df[columns].reset_index(drop=True)


def burn_alerts_frame(
    session: Session, slos: list[SloDefinition], *, window: Window
) -> pd.DataFrame:
    """Page-severity burn alerts that fired inside ``window`` (start and end of each episode).

    Columns: service, slo, pair, started_at, ended_at (NaT while still firing), peak_burn.
    """
    columns = ["service", "slo", "pair", "started_at", "ended_at", "peak_burn"]
    rows: list[dict[str, Any]] = []
    for slo in slos:
        df = burn_frame(session, slo, window=window)
        if df.empty:
            continue
        for pair in WINDOW_PAIRS:
            if pair.severity != "page":
                continue
            long_col, short_col = (f"burn_{format_duration(w)}" for w in (pair.long, pair.short))
            firing = (df[long_col] > pair.factor) & (df[short_col] > pair.factor)
            episode = (firing != firing.shift(fill_value=False)).cumsum()
            for _, part in df[firing].groupby(episode[firing]):
                after = df[(df["ts"] > part["ts"].iloc[-1])]
                rows.append(
                    {
                        "service": slo.service,
                        "slo": slo.slo,
                        "pair": pair.label,
                        "started_at": part["ts"].iloc[0].to_pydatetime(),
                        "ended_at": after["ts"].iloc[0].to_pydatetime()
                        if not after.empty
                        else None,
                        "peak_burn": float(part[long_col].max()),
                    }
                )
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------------
# Incident timeline and postmortems
# --------------------------------------------------------------------------------------------


def postmortems_frame(session: Session, *, incident_key: str | None = None) -> pd.DataFrame:
    """Postmortems, newest first.

    Columns: incident_key, generated_at, generated_by, issue_url, action_items (list),
    open_items (count of unchecked items).
    """
    stmt = select(
        Postmortem.incident_key,
        Postmortem.generated_at,
        Postmortem.generated_by,
        Postmortem.issue_url,
        Postmortem.action_items,
    ).order_by(Postmortem.generated_at.desc())
    if incident_key:
        stmt = stmt.where(Postmortem.incident_key == incident_key)
    df = frame(
        session, stmt, ["incident_key", "generated_at", "generated_by", "issue_url", "action_items"]
    )
    df["open_items"] = [
        sum(1 for item in items or [] if not (isinstance(item, dict) and item.get("done")))
        for items in df["action_items"]
    ]
    return df


def timeline_frame(
    session: Session, *, window: Window, slos: list[SloDefinition] | None = None
) -> pd.DataFrame:
    """Everything stored that happened in ``window``, in time order.

    Columns: at, kind (deploy | weight_flip | bundle_pin | failover | incident | alert |
    burn_alert | action), subject, detail. Weight flips are changes between consecutive
    Route53 snapshots; alerts are the Alertmanager alerts of incidents (firing and resolved).
    """
    columns = ["at", "kind", "subject", "detail"]
    rows: list[tuple[Any, ...]] = []

    def between(col: Any) -> Any:
        return (col >= window.start) & (col < window.end)

    for at, env, state, repo in session.execute(
        select(
            DeploymentStatus.created_at,
            DeploymentStatus.environment,
            DeploymentStatus.state,
            DeploymentStatus.repo,
        ).where(between(DeploymentStatus.created_at), DeploymentStatus.state == "success")
    ):
        rows.append((at, "deploy", f"{repo} → {env}", f"deployment {state}"))
    for at, bundle, env, rev, who in session.execute(
        select(
            BundlePin.pinned_at,
            BundlePin.bundle,
            BundlePin.environment,
            BundlePin.revision,
            BundlePin.pinned_by,
        ).where(between(BundlePin.pinned_at))
    ):
        rows.append((at, "bundle_pin", f"{bundle} @ {env}", f"pinned {rev} by {who}"))
    for at, run_key, phase, message in session.execute(
        select(
            FailoverEvent.at, FailoverEvent.run_key, FailoverEvent.phase, FailoverEvent.message
        ).where(between(FailoverEvent.at))
    ):
        rows.append((at, "failover", run_key, f"{phase or 'event'}: {message}"))
    for key, title, started, resolved in session.execute(
        select(Incident.incident_key, Incident.title, Incident.started_at, Incident.resolved_at)
    ):
        if window.start <= started < window.end:
            rows.append((started, "incident", key, f"started: {title}"))
        if resolved is not None and window.start <= resolved < window.end:
            rows.append((resolved, "incident", key, "resolved"))
    for key, name, severity, fp, starts, ends, status in session.execute(
        select(
            IncidentAlert.incident_key,
            IncidentAlert.alertname,
            IncidentAlert.severity,
            IncidentAlert.fingerprint,
            IncidentAlert.starts_at,
            IncidentAlert.ends_at,
            IncidentAlert.status,
        ).where(
            (between(IncidentAlert.starts_at))
            | (IncidentAlert.ends_at.is_not(None) & between(IncidentAlert.ends_at))
        )
    ):
        if window.start <= as_utc(starts) < window.end:
            rows.append((starts, "alert", key, f"{name} ({severity or '-'}) firing [{fp}]"))
        if status == "resolved" and ends is not None and window.start <= as_utc(ends) < window.end:
            rows.append((ends, "alert", key, f"{name} resolved [{fp}]"))
    for at, actor, action, target, outcome in session.execute(
        select(
            ActionAudit.at,
            ActionAudit.actor,
            ActionAudit.action,
            ActionAudit.target,
            ActionAudit.outcome,
        ).where(between(ActionAudit.at))
    ):
        rows.append((at, "action", f"{action} {target}", f"{outcome} by {actor}"))
    rows.extend(_weight_flips(session, window))
    if slos:
        alerts = burn_alerts_frame(session, slos, window=window)
        for alert in alerts.to_dict("records"):
            ended = alert["ended_at"]
            end = f"until {ended:%H:%M}" if isinstance(ended, datetime) else "still firing"
            rows.append(
                (
                    alert["started_at"],
                    "burn_alert",
                    f"{alert['service']}/{alert['slo']}",
                    f"page {alert['pair']}: peak {alert['peak_burn']:.1f}× ({end})",
                )
            )
    df = pd.DataFrame(rows, columns=columns)
    if df.empty:
        return df
    df["at"] = [as_utc(v) for v in df["at"]]
    return df.sort_values(["at", "kind"], kind="stable").reset_index(drop=True)


def _weight_flips(session: Session, window: Window) -> list[tuple[Any, ...]]:
    stmt = (
        select(
            DnsWeightObservation.observed_at,
            DnsWeightObservation.record_name,
            DnsWeightObservation.set_identifier,
            DnsWeightObservation.weight,
        )
        .where(DnsWeightObservation.observed_at < window.end)
        .where(DnsWeightObservation.observed_at >= window.start - timedelta(days=1))
        .order_by(DnsWeightObservation.observed_at)
    )
    last: dict[tuple[str, str], int] = {}
    flips: list[tuple[Any, ...]] = []
    for at, record, ident, weight in session.execute(stmt):
        key = (record, ident)
        before = last.get(key)
        last[key] = weight
        if before is not None and before != weight and at >= window.start:
            flips.append((at, "weight_flip", f"{record} {ident}", f"weight {before} → {weight}"))
    return flips


def latest_sample_at(session: Session, *, before: datetime) -> datetime | None:
    """The newest SLO sample time at or before ``before`` (None when there is none)."""
    value = session.scalar(select(func.max(SloSample.ts)).where(SloSample.ts <= before))
    return as_utc(value) if value is not None else None


def policy_state(
    session: Session, slos: list[SloDefinition], *, service: str, as_of: datetime
) -> tuple[str, str, list[BudgetStatus]]:
    """The error-budget policy state of ``service``: (normal|freeze, reason, per-SLO statuses).

    What `/api/gates/<service>` answers and what the guarded actions' `error-budget-not-frozen`
    rule reads; a service without any SLO is `normal` with a reason saying so.
    """
    statuses = [budget_status(session, s, as_of=as_of) for s in slos if s.service == service]
    frozen = [s for s in statuses if s.state == "freeze"]
    if frozen:
        reason = "; ".join(f"{s.slo.service}/{s.slo.slo}: {s.reason}" for s in frozen)
        return "freeze", reason, statuses
    if not statuses:
        return "normal", f"no SLO is defined for {service}", statuses
    if all(s.no_data for s in statuses):
        return (
            "normal",
            "no SLO samples in the window: the no-data policy is normal, so the policy cannot "
            "freeze without data",
            (statuses),
        )
    return "normal", "", statuses


# --------------------------------------------------------------------------------------------
# Alertmanager alerts of incidents
# --------------------------------------------------------------------------------------------

ALERT_COLUMNS = [
    "incident_key",
    "fingerprint",
    "alertname",
    "service",
    "severity",
    "status",
    "starts_at",
    "ends_at",
    "labels",
    "annotations",
]


def alerts_frame(
    session: Session,
    *,
    incident_keys: Sequence[str] | None = None,
    status: str | None = None,
    service: str | None = None,
) -> pd.DataFrame:
    """Alerts of incidents (oldest first); ``status`` firing|resolved filters the alert.

    Columns: see :data:`ALERT_COLUMNS`.
    """
    stmt = select(
        IncidentAlert.incident_key,
        IncidentAlert.fingerprint,
        IncidentAlert.alertname,
        IncidentAlert.service,
        IncidentAlert.severity,
        IncidentAlert.status,
        IncidentAlert.starts_at,
        IncidentAlert.ends_at,
        IncidentAlert.labels,
        IncidentAlert.annotations,
    ).order_by(IncidentAlert.starts_at, IncidentAlert.id)
    if incident_keys is not None:
        stmt = stmt.where(IncidentAlert.incident_key.in_(list(incident_keys)))
    if status is not None:
        stmt = stmt.where(IncidentAlert.status == status)
    if service is not None:
        stmt = stmt.where(IncidentAlert.service == service)
    return frame(session, stmt, ALERT_COLUMNS)


def _iso(value: Any) -> str | None:
    if value is None or value is pd.NaT or (isinstance(value, float) and pd.isna(value)):
        return None
    at = as_utc(value)
    return at.isoformat().replace("+00:00", "Z") if isinstance(at, datetime) else None


def incidents_with_alerts(
    session: Session, *, status: str | None = None, limit: int = 500
) -> list[dict[str, Any]]:
    """Incidents (newest first) with their alerts, for `GET /api/incidents`.

    ``status``: `open` (not resolved) or `resolved`; None lists both.
    """
    stmt = select(
        Incident.incident_key,
        Incident.title,
        Incident.severity,
        Incident.service,
        Incident.started_at,
        Incident.resolved_at,
        Incident.alert_group,
    ).order_by(Incident.started_at.desc(), Incident.id.desc())
    if status == "open":
        stmt = stmt.where(Incident.resolved_at.is_(None))
    elif status == "resolved":
        stmt = stmt.where(Incident.resolved_at.is_not(None))
    incidents = session.execute(stmt.limit(limit)).all()
    alerts = alerts_frame(session, incident_keys=[r[0] for r in incidents])
    by_key: dict[str, list[dict[str, Any]]] = {}
    for a in alerts.to_dict("records"):
        by_key.setdefault(a["incident_key"], []).append(
            {
                "fingerprint": a["fingerprint"],
                "alertname": a["alertname"],
                "status": a["status"],
                "severity": a["severity"],
                "labels": a["labels"],
                "annotations": a["annotations"],
                "starts_at": _iso(a["starts_at"]),
                "ends_at": _iso(a["ends_at"]),
            }
        )
    return [
        {
            "incident_key": key,
            "title": title,
            "severity": severity,
            "service": service,
            "status": "open" if resolved is None else "resolved",
            "started_at": _iso(started),
            "resolved_at": _iso(resolved),
            "alert_group": group,
            "alerts": by_key.get(key, []),
        }
        for key, title, severity, service, started, resolved, group in incidents
    ]
