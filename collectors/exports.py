"""Export access events: gateway JSON lines (`POST /ingest/exports`) and ingress/nginx JSON logs.

One export event per line as the gateway saw the download::

    {"event_id": "…", "export_id": "exp-1", "user": "ana", "tenant": "acme",
     "time": "2025-11-12T10:00:00Z", "route": "/exports/exp-1/download", "status": 200,
     "bytes": 1024, "watermark": {"headers": true},
     "token": {"present": true, "valid": true, "expired": false, "scope": "export:read"}}

Without an `event_id` the line's own hash is its key, so a re-sent file adds nothing.

ingress-nginx does not know whether an export token was valid, only what the upstream told it;
:func:`transform_access_log_line` therefore reads the upstream's `X-Export-*` response headers
(logged as `$upstream_http_x_export_*`) and only infers token state from the status when the
upstream did not say (see docs/egress-reliability-evidence.md for the log format).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy.orm import Session

from collectors.base import (
    InvalidItem,
    JsonTooDeep,
    loads_bounded,
    parse_time,
    refuse_body,
    require,
    storage_problem,
)
from store.ingest import IngestResult, record_rejects, record_sync_run, upsert
from store.models import ExportEvent

SOURCE = "exports"
TOKEN_STATES = ("valid", "missing", "invalid", "expired")
_EMPTY = (None, "", "-")


@dataclass(frozen=True)
class LineError:
    """Why one line of a batch cannot be stored (1-based line number, field, problem)."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def _token_state(token: Any) -> str:
    if not isinstance(token, dict) or not token.get("present"):
        return "missing"
    if token.get("expired"):
        return "expired"
    return "valid" if token.get("valid") else "invalid"


def _optional_str(line: dict[str, Any], key: str, limit: int) -> str | None:
    value = line.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidItem(f"{key}: expected a string, got {type(value).__name__}")
    return value[:limit]


def _flags(line: dict[str, Any], key: str, names: Iterable[str]) -> dict[str, Any]:
    value = line.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidItem(f"{key}: expected an object, got {type(value).__name__}")
    for name in names:
        flag = value.get(name)
        if flag is not None and not isinstance(flag, bool):
            raise InvalidItem(f"{key}.{name}: expected true/false, got {type(flag).__name__}")
    return value


def transform_export_event(line: Any) -> dict[str, Any]:
    """Validate one export event and map it to an `export_events` row."""
    if not isinstance(line, dict):
        raise InvalidItem("line: expected a JSON object")
    status = require(line, "status", int)
    if not 100 <= status <= 599:
        raise InvalidItem(f"status: {status} is not an HTTP status")
    route = require(line, "route", str)
    at = parse_time(line.get("time"), field="time")
    size = line.get("bytes", 0)
    if size is None:
        size = 0
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidItem(f"bytes: expected a non-negative integer, got {size!r}")
    token = _flags(line, "token", ("present", "valid", "expired"))
    scope = token.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise InvalidItem(f"token.scope: expected a string, got {type(scope).__name__}")
    watermark = _flags(line, "watermark", ("headers",))
    event_id = line.get("event_id")
    if event_id is not None and not isinstance(event_id, str):
        raise InvalidItem(f"event_id: expected a string, got {type(event_id).__name__}")
    event_id = (
        event_id or hashlib.sha256(json.dumps(line, sort_keys=True).encode()).hexdigest()[:40]
    )
    return {
        "event_id": event_id[:100],
        "export_id": _optional_str(line, "export_id", 100),
        "ts": at,
        "user": _optional_str(line, "user", 200),
        "tenant": _optional_str(line, "tenant", 200),
        "route": route[:500],
        "status": status,
        "bytes": size,
        "token_state": _token_state(token),
        "token_scope": scope[:200] if scope else None,
        "watermarked": bool(watermark.get("headers")),
    }


def _field(line: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = line.get(key)
        if value not in _EMPTY:
            return value
    return None


def transform_access_log_line(
    line: Any, *, route_pattern: re.Pattern[str] | None = None
) -> dict[str, Any] | None:
    """Map one ingress-nginx JSON access-log line to an `export_events` row.

    Returns None for a request outside ``route_pattern`` (not an export download). The token
    itself is never stored: only whether one was presented and what the upstream made of it.
    """
    if not isinstance(line, dict):
        raise InvalidItem("line: expected a JSON object")
    target = _field(line, "request_uri", "uri", "path")
    if not isinstance(target, str):
        raise InvalidItem("request_uri: missing or not a string")
    parts = urlsplit(target)
    route = parts.path or "/"
    if route_pattern is not None and not route_pattern.search(route):
        return None
    raw_status = _field(line, "status")
    try:
        status = int(raw_status)
    except (TypeError, ValueError) as exc:
        raise InvalidItem(f"status: {raw_status!r} is not an HTTP status") from exc
    if not 100 <= status <= 599:
        raise InvalidItem(f"status: {status} is not an HTTP status")
    at = parse_time(_field(line, "time_iso8601", "time", "timestamp"), field="time")
    raw_bytes = _field(line, "bytes_sent", "body_bytes_sent") or 0
    try:
        size = int(raw_bytes)
    except (TypeError, ValueError) as exc:
        raise InvalidItem(f"bytes_sent: {raw_bytes!r} is not a byte count") from exc
    query = parse_qs(parts.query)
    presented = bool(query.get("token") or _field(line, "http_authorization"))
    stated = _field(line, "upstream_http_x_export_token_state")
    if isinstance(stated, str) and stated.lower() in TOKEN_STATES:
        state = stated.lower()
    elif not presented:
        state = "missing"
    elif status in (401, 403):
        state = "invalid"
    else:
        # The upstream served (or the limiter answered before checking): the token was accepted.
        state = "valid"
    export_id = _field(line, "upstream_http_x_export_id")
    user = _field(line, "upstream_http_x_export_user", "remote_user")
    stamp = _field(line, "upstream_http_x_export_timestamp")
    event_id = (
        _field(line, "req_id", "request_id")
        or hashlib.sha256(json.dumps(line, sort_keys=True).encode()).hexdigest()[:40]
    )
    return {
        "event_id": str(event_id)[:100],
        "export_id": str(export_id)[:100] if export_id else None,
        "ts": at,
        "user": str(user)[:200] if user else None,
        "tenant": str(_field(line, "http_x_tenant", "tenant") or "")[:200] or None,
        "route": route[:500],
        "status": status,
        "bytes": max(size, 0),
        "token_state": state,
        "token_scope": str(_field(line, "upstream_http_x_export_scope") or "")[:200] or None,
        "watermarked": bool(export_id and user and stamp),
    }


def _parse_line(raw: str) -> Any:
    """One line as bounded JSON; `InvalidItem` for what is not JSON, `JsonTooDeep` for depth."""
    try:
        return loads_bounded(raw)
    except JsonTooDeep:
        raise
    except json.JSONDecodeError as exc:
        raise InvalidItem(f"not JSON ({exc.msg})") from exc
    except ValueError as exc:
        raise InvalidItem(f"not JSON ({exc})") from exc


def classify_export_lines(
    text: str,
) -> tuple[list[dict[str, Any]], list[LineError], list[LineError]]:
    """Rows, invalid lines (schema, not JSON, too deep to parse) and poison lines.

    Poison: a parsed line the store cannot hold (NUL, lone surrogate, NaN, oversize); it is
    dead-lettered while the others are stored. An invalid line refuses the batch.
    """
    rows: list[dict[str, Any]] = []
    errors: list[LineError] = []
    poison: list[LineError] = []
    for index, raw in enumerate(text.splitlines()):
        if not raw.strip():
            continue
        try:
            item = _parse_line(raw)
        except (InvalidItem, JsonTooDeep) as exc:  # a line too deep to parse is not a document
            errors.append(LineError(index + 1, str(exc)))
            continue
        problem = storage_problem(item, where="line")
        if problem is not None:
            poison.append(LineError(index + 1, problem))
            continue
        try:
            rows.append(transform_export_event(item))
        except InvalidItem as exc:
            errors.append(LineError(index + 1, str(exc)))
    return rows, errors, poison


def parse_export_lines(text: str) -> tuple[list[dict[str, Any]], list[LineError]]:
    """Parse JSON-lines export events into rows; every bad line is named with its field."""
    rows, errors, poison = classify_export_lines(text)
    return rows, sorted([*errors, *poison], key=lambda e: e.line)


def receive_export_lines(session: Session, body: bytes, *, received_at: datetime) -> IngestResult:
    """`POST /ingest/exports`'s one call: JSON lines in, counts out.

    Lines the store cannot hold are dead-lettered and the rest stored; one invalid line
    refuses the batch (``refused``: a 400 naming every bad line; they are dead-lettered,
    nothing is stored) so the sender fixes and resends it whole.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        reason = "body: not UTF-8 text"
        result = refuse_body(
            session, source=SOURCE, reason=reason, body=body, received_at=received_at
        )
        record_sync_run(session, source=SOURCE, started_at=received_at, result=result)
        return result
    lines = text.splitlines()
    rows, errors, poison = classify_export_lines(text)
    bad = sorted([*errors, *poison], key=lambda e: e.line)
    if not errors and not rows and not poison:
        result = refuse_body(
            session,
            source=SOURCE,
            reason="body: expected JSON lines of export events",
            body=body,
            received_at=received_at,
        )
    else:
        dead = poison if not errors else bad
        result = IngestResult() if errors else load_export_events(session, rows)
        if errors:
            result.refused = f"{len(errors)} invalid line(s): nothing stored"
        if dead:
            result.rejected = record_rejects(
                session,
                source=SOURCE,
                rejects=[(e.line - 1, str(e), lines[e.line - 1]) for e in dead],
                received_at=received_at,
            )
            result.reasons = [str(e) for e in dead]
    record_sync_run(session, source=SOURCE, started_at=received_at, result=result)
    return result


def load_export_events(session: Session, rows: list[dict[str, Any]]) -> IngestResult:
    """Upsert export events (a retried batch adds nothing)."""
    result = IngestResult()
    result.add(upsert(session, ExportEvent, rows, conflict=("event_id",)))
    return result


def ingest_export_lines(session: Session, text: str, *, received_at: datetime) -> IngestResult:
    """Store JSON-lines export events; unparsable or invalid lines are dead-lettered."""
    lines = text.splitlines()
    rows, errors = parse_export_lines(text)
    result = load_export_events(session, rows)
    if errors:
        rejects = [(e.line - 1, str(e), lines[e.line - 1]) for e in errors]
        result.rejected = record_rejects(
            session, source=SOURCE, rejects=rejects, received_at=received_at
        )
        result.reasons = [str(e) for e in errors]
    return result


def ingest_access_log(
    session: Session,
    lines: Iterable[str],
    *,
    received_at: datetime,
    route_pattern: re.Pattern[str] | None = None,
) -> IngestResult:
    """Store an ingress-nginx JSON access log (or gateway event lines) as export events.

    A line carrying `route` is a gateway export event; anything else is read as an nginx
    access-log line. Lines outside ``route_pattern`` are counted as ignored; bad lines are
    dead-lettered with their line number and field.
    """
    result = IngestResult()
    rows: list[dict[str, Any]] = []
    rejects: list[tuple[int | None, str, Any]] = []
    for index, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            item = _parse_line(raw)
            problem = storage_problem(item, where="line")
            if problem is not None:
                raise InvalidItem(problem)
            if isinstance(item, dict) and "route" in item:
                row: dict[str, Any] | None = transform_export_event(item)
            else:
                row = transform_access_log_line(item, route_pattern=route_pattern)
        except (InvalidItem, JsonTooDeep) as exc:
            rejects.append((index, f"line {index + 1}: {exc}", raw))
            continue
        if row is None:
            result.ignored += 1
        else:
            rows.append(row)
    result.merge(load_export_events(session, rows))
    if rejects:
        result.rejected = record_rejects(
            session, source=SOURCE, rejects=rejects, received_at=received_at
        )
        result.reasons = [r for _, r, _ in rejects]
    return result
