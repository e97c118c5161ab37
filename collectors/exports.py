"""Export access events (`POST /ingest/exports`, JSON lines): token state and watermark headers.

One line per download as the gateway saw it::

    {"event_id": "…", "export_id": "exp-1", "user": "ana", "tenant": "acme",
     "time": "2025-11-12T10:00:00Z", "route": "/exports/exp-1/download", "status": 200,
     "bytes": 1024, "watermark": {"headers": true},
     "token": {"present": true, "valid": true, "expired": false, "scope": "export:read"}}

Without an `event_id` the line's own hash is its key, so a re-sent file adds nothing.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from collectors.base import InvalidItem, parse_time, require
from store.ingest import IngestResult, record_rejects, upsert
from store.models import ExportEvent

SOURCE = "exports"


def _token_state(token: Any) -> str:
    if not isinstance(token, dict) or not token.get("present"):
        return "missing"
    if token.get("expired"):
        return "expired"
    return "valid" if token.get("valid") else "invalid"


def transform_export_event(line: Any) -> dict[str, Any]:
    """Validate one export event and map it to an `export_events` row."""
    if not isinstance(line, dict):
        raise InvalidItem("line: expected a JSON object")
    status = require(line, "status", int)
    if not 100 <= status <= 599:
        raise InvalidItem(f"status: {status} is not an HTTP status")
    route = require(line, "route", str)
    at = parse_time(line.get("time"), field="time")
    event_id = (
        line.get("event_id")
        or hashlib.sha256(json.dumps(line, sort_keys=True).encode()).hexdigest()[:40]
    )
    token = line.get("token") or {}
    watermark = line.get("watermark") or {}
    return {
        "event_id": str(event_id)[:100],
        "export_id": line.get("export_id"),
        "ts": at,
        "user": line.get("user"),
        "tenant": line.get("tenant"),
        "route": route[:500],
        "status": status,
        "bytes": int(line.get("bytes") or 0),
        "token_state": _token_state(token),
        "token_scope": token.get("scope") if isinstance(token, dict) else None,
        "watermarked": bool(isinstance(watermark, dict) and watermark.get("headers")),
    }


def ingest_export_lines(session: Session, text: str, *, received_at: datetime) -> IngestResult:
    """Store JSON-lines export events; unparsable or invalid lines are dead-lettered."""
    result = IngestResult()
    rows: list[dict[str, Any]] = []
    rejects: list[tuple[int | None, str, Any]] = []
    for index, raw in enumerate(text.splitlines()):
        if not raw.strip():
            continue
        try:
            rows.append(transform_export_event(json.loads(raw)))
        except json.JSONDecodeError as exc:
            rejects.append((index, f"line {index + 1}: not JSON ({exc.msg})", raw))
        except InvalidItem as exc:
            rejects.append((index, f"line {index + 1}: {exc}", raw))
    result.add(upsert(session, ExportEvent, rows, conflict=("event_id",)))
    if rejects:
        result.rejected = record_rejects(
            session, source=SOURCE, rejects=rejects, received_at=received_at
        )
        result.reasons = [r for _, r, _ in rejects]
    return result
