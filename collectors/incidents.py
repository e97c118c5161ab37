"""Incidents as a source (pager/incident tool webhooks, Alertmanager, the UI).

:func:`receive_incidents` is `POST /ingest/incidents`'s one call: an incident the store cannot
hold is dead-lettered and the rest stored; one invalid incident refuses the batch (``refused``).
An Alertmanager webhook body posted there is handed to :func:`receive_alertmanager`.

:func:`receive_alertmanager` is `POST /ingest/alertmanager`'s one call (webhook version 4).
Alertmanager retries a 5xx and drops a 4xx, so it is never refused for one bad alert: each
invalid alert is dead-lettered with its reason and the rest stored. A firing alert opens an
incident per (service, `groupKey`) or joins the open one; a resolved alert sets its `ends_at`,
and the incident is resolved when all its alerts are (at the latest `endsAt`). An alert is one
row per (`fingerprint`, `startsAt`), so a re-delivery changes nothing.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collectors.base import (
    InvalidItem,
    json_batch,
    loads_bounded,
    parse_optional_time,
    parse_time,
    refuse_body,
    require,
    storage_problem,
)
from store.ingest import IngestResult, record_rejects, record_sync_run, upsert
from store.models import Incident
from store.models.reliability import IncidentAlert

SOURCE = "incidents"
SEVERITIES = frozenset({"sev1", "sev2", "sev3", "sev4"})
MAX_INCIDENTS = 1000


def transform_incident(item: Any) -> dict[str, Any]:
    """Validate one incident object."""
    key = require(item, "key", str)
    severity = str(item.get("severity", "sev3")).lower()
    if severity not in SEVERITIES:
        raise InvalidItem(f"severity: {severity!r} is not one of {sorted(SEVERITIES)}")
    started = parse_time(item.get("started_at"), field="started_at")
    resolved = parse_optional_time(item.get("resolved_at"), field="resolved_at")
    if resolved is not None and resolved < started:
        raise InvalidItem("resolved_at: before started_at")
    return {
        "incident_key": key.upper(),
        "title": require(item, "title", str)[:500],
        "severity": severity,
        "service": item.get("service"),
        "started_at": started,
        "resolved_at": resolved,
        "summary": str(item.get("summary") or ""),
    }


def ingest_incidents(session: Session, items: list[Any], *, received_at: datetime) -> IngestResult:
    """Upsert incidents (a later report updates resolution and summary)."""
    result = IngestResult()
    rows, rejects = [], []
    for index, item in enumerate(items):
        try:
            rows.append(transform_incident(item))
        except InvalidItem as exc:
            rejects.append((index, str(exc), item))
    result.add(
        upsert(
            session,
            Incident,
            rows,
            conflict=("incident_key",),
            update=("title", "severity", "service", "resolved_at", "summary"),
        )
    )
    if rejects:
        result.rejected = record_rejects(
            session, source=SOURCE, rejects=rejects, received_at=received_at
        )
        result.reasons = [r for _, r, _ in rejects]
    return result


def receive_incidents(session: Session, body: bytes, *, received_at: datetime) -> IngestResult:
    """Store one incident object or a list of them (a later report updates resolution)."""
    if is_alertmanager_body(body):
        return receive_alertmanager(session, body, received_at=received_at)
    try:
        indexed, poison = json_batch(body)
    except ValueError as exc:
        result = refuse_body(
            session, source=SOURCE, reason=str(exc), body=body, received_at=received_at
        )
        record_sync_run(session, source=SOURCE, started_at=received_at, result=result)
        return result
    if not 1 <= len(indexed) + len(poison) <= MAX_INCIDENTS:
        result = refuse_body(
            session,
            source=SOURCE,
            reason=f"body: expected 1 to {MAX_INCIDENTS} incident objects",
            body=body,
            received_at=received_at,
        )
        record_sync_run(session, source=SOURCE, started_at=received_at, result=result)
        return result
    items: list[Any] = []
    invalid: list[tuple[int | None, str, Any]] = []
    for index, item in indexed:
        problem = storage_problem(item, where="incident")
        if problem is not None:
            poison.append((index, problem, item))
            continue
        try:
            transform_incident(item)
        except InvalidItem as exc:
            invalid.append((index, str(exc), item))
            continue
        items.append(item)
    dead = poison if not invalid else sorted([*invalid, *poison], key=lambda r: r[0] or 0)
    result = (
        IngestResult() if invalid else ingest_incidents(session, items, received_at=received_at)
    )
    if invalid:
        result.refused = "invalid incident(s): nothing stored"
    if dead:
        result.rejected = record_rejects(
            session, source=SOURCE, rejects=dead, received_at=received_at
        )
        result.reasons = [f"item {(i or 0) + 1}: {r}" for i, r, _ in dead]
    record_sync_run(session, source=SOURCE, started_at=received_at, result=result)
    return result


# --------------------------------------------------------------------------------------------
# Alertmanager webhook (version 4)
# --------------------------------------------------------------------------------------------

AM_SOURCE = "alertmanager"
MAX_ALERTS = 1000
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time: Alertmanager's "no endsAt"
SEVERITY_MAP = {
    "critical": "sev1",
    "page": "sev2",
    "error": "sev2",
    "warning": "sev3",
    "ticket": "sev3",
    "info": "sev4",
}


def is_alertmanager_body(body: bytes) -> bool:
    """Whether ``body`` looks like an Alertmanager webhook (cheap sniff before full parsing)."""
    head = body[:4096]
    return head.lstrip().startswith(b"{") and b'"alerts"' in body and b'"groupKey"' in body


def _am_time(value: Any, *, field: str) -> datetime | None:
    if isinstance(value, str) and value.startswith("0001-01-01"):
        return None
    return parse_optional_time(value, field=field)


def transform_alert(item: Any) -> dict[str, Any]:
    """Validate one alert of a webhook body into the fields of an `incident_alerts` row."""
    if not isinstance(item, dict):
        raise InvalidItem("alert: not an object")
    fingerprint = require(item, "fingerprint", str)
    if not fingerprint or len(fingerprint) > 64:
        raise InvalidItem("fingerprint: empty or longer than 64 characters")
    status = require(item, "status", str)
    if status not in ("firing", "resolved"):
        raise InvalidItem(f"status: {status!r} is not firing or resolved")
    labels = require(item, "labels", dict)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise InvalidItem("labels: every label name and value must be a string")
    alertname = labels.get("alertname")
    if not alertname:
        raise InvalidItem("labels.alertname: missing")
    annotations = item.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise InvalidItem("annotations: not an object")
    starts = _am_time(item.get("startsAt"), field="startsAt")
    if starts is None:
        raise InvalidItem("startsAt: missing")
    ends = _am_time(item.get("endsAt"), field="endsAt")
    if status == "resolved" and ends is None:
        raise InvalidItem("endsAt: a resolved alert needs its end")
    return {
        "fingerprint": fingerprint,
        "status": status,
        "labels": labels,
        "annotations": {str(k): str(v) for k, v in annotations.items()},
        "alertname": alertname[:200],
        "service": labels.get("service"),
        "severity": labels.get("severity"),
        "starts_at": starts,
        # Prometheus sends firing alerts with a provisional endsAt: only a resolution ends one.
        "ends_at": ends if status == "resolved" else None,
        "generator_url": str(item.get("generatorURL") or "")[:1000] or None,
    }


def _incident_key(service: str | None, group_key: str, starts_at: datetime) -> str:
    digest = hashlib.sha256(f"{service}|{group_key}|{starts_at.isoformat()}".encode()).hexdigest()
    return f"AM-{digest[:12].upper()}"


def _severity(values: list[str | None]) -> str:
    mapped = sorted(SEVERITY_MAP.get((v or "").lower(), "sev3") for v in values)
    return mapped[0] if mapped else "sev3"


def _open_incident(
    session: Session, alert: dict[str, Any], group_key: str, received_at: datetime
) -> str:
    """The open incident of (service, group) for ``alert``, opened when there is none."""
    key = session.scalar(
        select(Incident.incident_key)
        .where(
            Incident.alert_group == group_key,
            Incident.resolved_at.is_(None),
            Incident.service.is_(None)
            if alert["service"] is None
            else Incident.service == alert["service"],
        )
        .order_by(Incident.started_at)
        .limit(1)
    )
    if key is not None:
        return str(key)
    key = _incident_key(alert["service"], group_key, alert["starts_at"])
    existing = session.scalar(select(Incident).where(Incident.incident_key == key))
    if existing is None:
        summary = alert["annotations"].get("summary") or alert["alertname"]
        session.add(
            Incident(
                incident_key=key,
                title=str(summary)[:500],
                severity=_severity([alert["severity"]]),
                service=alert["service"],
                started_at=alert["starts_at"],
                resolved_at=None,
                summary=alert["annotations"].get("description", ""),
                alert_group=group_key,
            )
        )
        session.flush()
    return key


def _refresh_incident(session: Session, key: str) -> None:
    """Severity = the worst of its alerts; resolved at the last `endsAt` once all are resolved."""
    incident = session.scalar(select(Incident).where(Incident.incident_key == key))
    if incident is None:
        return
    alerts = session.scalars(select(IncidentAlert).where(IncidentAlert.incident_key == key)).all()
    if not alerts:
        return
    incident.severity = _severity([a.severity for a in alerts])
    incident.started_at = min(incident.started_at, *(a.starts_at for a in alerts))
    ends = [a.ends_at for a in alerts]
    if all(a.status == "resolved" and a.ends_at is not None for a in alerts):
        incident.resolved_at = max(e for e in ends if e is not None)
    else:
        incident.resolved_at = None


def ingest_alerts(
    session: Session, alerts: list[dict[str, Any]], *, group_key: str, received_at: datetime
) -> IngestResult:
    """Store validated alerts: new episodes open/join incidents, resolutions close them."""
    result = IngestResult()
    touched: set[str] = set()
    for alert in alerts:
        row = session.scalar(
            select(IncidentAlert).where(
                IncidentAlert.fingerprint == alert["fingerprint"],
                IncidentAlert.starts_at == alert["starts_at"],
            )
        )
        if row is not None:
            if alert["status"] == "resolved" and row.status != "resolved":
                row.status = "resolved"
                row.ends_at = alert["ends_at"]
                row.updated_at = received_at
                touched.add(row.incident_key)
                result.stored += 1
            else:
                result.duplicates += 1
            continue
        key = _open_incident(session, alert, group_key, received_at)
        session.add(
            IncidentAlert(
                **alert,
                incident_key=key,
                group_key=group_key[:500],
                received_at=received_at,
                updated_at=received_at,
            )
        )
        session.flush()
        touched.add(key)
        result.stored += 1
    for key in sorted(touched):
        _refresh_incident(session, key)
    return result


def receive_alertmanager(session: Session, body: bytes, *, received_at: datetime) -> IngestResult:
    """Store one Alertmanager webhook body; bad alerts are dead-lettered, never the batch."""

    def refuse(reason: str) -> IngestResult:
        result = refuse_body(
            session, source=AM_SOURCE, reason=reason, body=body, received_at=received_at
        )
        record_sync_run(session, source=AM_SOURCE, started_at=received_at, result=result)
        return result

    try:
        payload = loads_bounded(body) if body.strip() else None
    except (ValueError, UnicodeDecodeError) as exc:
        return refuse(f"body: not JSON: {exc}")
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        return refuse("body: expected an Alertmanager webhook object with an `alerts` list")
    version = payload.get("version")
    if version != "4":
        return refuse(f"version: {version!r} is not the webhook version 4 this receiver reads")
    items = payload["alerts"]
    if not 1 <= len(items) <= MAX_ALERTS:
        return refuse(f"alerts: expected 1 to {MAX_ALERTS} alerts")
    group_key = payload.get("groupKey")
    if not isinstance(group_key, str):
        return refuse("groupKey: missing or not a string")
    common: dict[str, Any] = {}
    if isinstance(payload.get("commonLabels"), dict):
        common = payload["commonLabels"]
    valid: list[dict[str, Any]] = []
    dead: list[tuple[int | None, str, Any]] = []
    for index, item in enumerate(items):
        problem = storage_problem(item, where="alert")
        if problem is not None:
            dead.append((index, problem, item))
            continue
        try:
            alert = transform_alert(item)
        except InvalidItem as exc:
            dead.append((index, str(exc), item))
            continue
        if alert["service"] is None and isinstance(common.get("service"), str):
            alert["service"] = common["service"]
        valid.append(alert)
    result = ingest_alerts(session, valid, group_key=group_key, received_at=received_at)
    if dead:
        result.rejected = record_rejects(
            session, source=AM_SOURCE, rejects=dead, received_at=received_at
        )
        result.reasons = [f"alert {(i or 0) + 1}: {r}" for i, r, _ in dead]
    record_sync_run(session, source=AM_SOURCE, started_at=received_at, result=result)
    return result
