"""Incidents as a source (pager/incident tool webhooks or the UI): key, window, severity."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from collectors.base import InvalidItem, parse_optional_time, parse_time, require
from store.ingest import IngestResult, record_rejects, upsert
from store.models import Incident

SOURCE = "incidents"
SEVERITIES = frozenset({"sev1", "sev2", "sev3", "sev4"})


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
