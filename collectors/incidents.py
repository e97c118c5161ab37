"""Incidents as a source (pager/incident tool webhooks or the UI): key, window, severity.

:func:`receive_incidents` is `POST /ingest/incidents`'s one call: an incident the store cannot
hold is dead-lettered and the rest stored; one invalid incident refuses the batch (``refused``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from collectors.base import (
    InvalidItem,
    json_batch,
    parse_optional_time,
    parse_time,
    refuse_body,
    require,
    storage_problem,
)
from store.ingest import IngestResult, record_rejects, record_sync_run, upsert
from store.models import Incident

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
