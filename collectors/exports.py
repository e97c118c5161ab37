"""Export access events: the console's own download attempts, gateway JSON lines
(`POST /ingest/exports`) and the access logs of the proxy/limiter in front (NGINX `combined`,
ingress-nginx `upstreaminfo`, JSON).

**One event per request.** The console takes the request id from the proxy (`X-Request-ID`,
NGINX `proxy_set_header X-Request-ID $request_id`) and keys its own event on it; a proxy log
line carrying the same id (`$request_id` in JSON, `$req_id` last in `upstreaminfo`) is merged
into that event (it marks the event ``in_proxy_log``), never added beside it. A request the
limiter refused never reached the console: its log line becomes the event, answered by
``limiter``, token ``not_checked``. `combined` has no request id: its line is merged into the
console's event with the same route, status and body size whose time fits the line's second
(nginx logs when the answer ends), else stored as its own event; the line's key (its hash and
its occurrence in the file) is kept so a re-import adds nothing.

Gateway event line (`POST /ingest/exports`, or a JSON log)::

    {"event_id": "…", "export_id": "exp-1", "user": "ana", "tenant": "acme",
     "time": "2025-11-12T10:00:00Z", "route": "/exports/exp-1/download", "status": 200,
     "bytes": 1024, "watermark": {"headers": true}, "answered_by": "application",
     "token": {"present": true, "valid": true, "expired": false, "scope": "export:read"}}

**No secrets at rest.** Tokens in query strings (`token=`, `access_token=`, `sig=`…),
`Authorization` values, cookies and anything shaped like a signed token are redacted by
:func:`redact` before a line, a reason or a dead letter is stored or logged. Events keep only
the path, never the query.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from collectors.base import (
    InvalidItem,
    JsonTooDeep,
    loads_bounded,
    parse_time,
    require,
    storage_problem,
)
from store.ingest import IngestResult, record_rejects, record_sync_run, upsert
from store.models import ExportEvent
from store.queries.egress import refusal_reason

SOURCE = "exports"
TOKEN_STATES = ("valid", "invalid", "expired", "missing", "not_checked")
ANSWERED_BY = ("application", "limiter", "proxy")
FORMATS = ("json", "combined", "upstreaminfo")
LIMITER_STATUSES = (429, 503)  # limit_req_status 429 / nginx's default 503
# nginx logs when the answer ends, to the second; the console stamps when it started.
MERGE_BEFORE = timedelta(seconds=30)
MERGE_AFTER = timedelta(seconds=2)
_EMPTY = (None, "", "-")
REDACTED = "[redacted]"

_SECRET_QUERY = re.compile(
    r"(?i)(?P<k>(?:^|[?&;\s\"'])(?:token|access_token|id_token|auth|sig|signature|"
    r"x-amz-signature|x-amz-security-token|code|password|apikey|api_key)=)[^&\s\"';]*"
)
_SECRET_HEADER = re.compile(
    r"(?i)(?P<k>\b(?:authorization|proxy-authorization|cookie|set-cookie|x-api-key)"
    r"\"?\s*[:=]\s*\"?)(?:[^\"\r\n\\]|\\.)*"
)
_SECRET_JSON_KEY = re.compile(
    r"(?i)(?P<k>\"(?:http_authorization|http_cookie|authorization|cookie|token|"
    r"upstream_http_set_cookie)\"\s*:\s*\")(?:[^\"\\]|\\.)*"
)
# A signed token as the console and most issuers write them: b64url(JSON "{…") "." b64url(…).
_TOKEN_SHAPE = re.compile(r"eyJ[A-Za-z0-9_\-]{8,}(?:\.[A-Za-z0-9_\-]+){1,2}")


def redact(text: str) -> str:
    """``text`` with download tokens, credentials and cookies replaced by ``[redacted]``."""
    text = _SECRET_JSON_KEY.sub(lambda m: m.group("k") + REDACTED, text)
    text = _SECRET_HEADER.sub(lambda m: m.group("k") + REDACTED, text)
    text = _SECRET_QUERY.sub(lambda m: m.group("k") + REDACTED, text)
    return _TOKEN_SHAPE.sub(REDACTED, text)


def _redacted_rejects(
    rejects: Iterable[tuple[int | None, str, Any]],
) -> list[tuple[int | None, str, Any]]:
    out: list[tuple[int | None, str, Any]] = []
    for index, reason, payload in rejects:
        if isinstance(payload, bytes):
            payload = payload.decode("utf-8", "replace")
        if not isinstance(payload, str):
            payload = json.dumps(payload, default=str, ensure_ascii=False)
        out.append((index, redact(reason), redact(payload)))
    return out


def dead_letter(
    session: Session, rejects: Iterable[tuple[int | None, str, Any]], *, received_at: datetime
) -> int:
    """`record_rejects` for this source, redacted first (payloads and reasons)."""
    return record_rejects(
        session, source=SOURCE, rejects=_redacted_rejects(rejects), received_at=received_at
    )


@dataclass(frozen=True)
class LineError:
    """Why one line of a batch cannot be stored (1-based line number, field, problem)."""

    line: int
    reason: str

    def __str__(self) -> str:
        return redact(f"line {self.line}: {self.reason}")


def _token_state(token: Any) -> str:
    if isinstance(token, dict) and isinstance(token.get("state"), str):
        state = str(token["state"]).lower()
        if state not in TOKEN_STATES:
            raise InvalidItem(f"token.state: {state!r} is not one of {list(TOKEN_STATES)}")
        return state
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


def _line_key(line: Any) -> str:
    return hashlib.sha256(json.dumps(line, sort_keys=True).encode()).hexdigest()[:40]


def transform_export_event(line: Any, *, proxy: bool = True) -> dict[str, Any]:
    """Validate one gateway export event and map it to an `export_events` row.

    ``proxy``: the line comes from the proxy/gateway in front (its side of the request is in).
    """
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
    answered_by = line.get("answered_by") or "application"
    if answered_by not in ANSWERED_BY:
        raise InvalidItem(f"answered_by: {answered_by!r} is not one of {list(ANSWERED_BY)}")
    state = _token_state(token)
    if answered_by == "limiter":
        state = "not_checked"
    reason = _optional_str(line, "reason", 40)
    return {
        "event_id": (event_id or _line_key(line))[:100],
        "export_id": _optional_str(line, "export_id", 100),
        "ts": at,
        "user": _optional_str(line, "user", 200),
        "tenant": _optional_str(line, "tenant", 200),
        "route": urlsplit(route).path[:500] or "/",
        "status": status,
        "bytes": size,
        "token_state": state,
        "token_scope": scope[:200] if scope else None,
        "watermarked": bool(watermark.get("headers")),
        "answered_by": answered_by,
        "reason": reason or refusal_reason(status, state, answered_by),
        "in_proxy_log": proxy,
    }


# --------------------------------------------------------------------------------------------
# Access-log formats
# --------------------------------------------------------------------------------------------

_COMBINED = re.compile(
    r'^(?P<addr>\S+) - (?P<ruser>\S+) \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" '
    r'(?P<status>\d{3}) (?P<bytes>\d+|-) "(?P<referer>[^"]*)" "(?P<ua>[^"]*)"(?P<rest>.*)$'
)
_UPSTREAMINFO_REST = re.compile(
    r"^ (?P<req_len>\d+) (?P<req_time>[\d.]+|-) \[(?P<up_name>[^\]]*)\] \[(?P<alt>[^\]]*)\] "
    r"(?P<upstream>.+) (?P<req_id>\S+)$"
)


@dataclass
class AccessLine:
    """One access-log line in the terms every format shares (the token never kept)."""

    at: datetime
    request_id: str | None
    path: str | None
    token_presented: bool
    status: int
    size: int
    upstream_status: str | None  # None: the format does not say; "": no upstream answered
    export_id: str | None = None
    export_user: str | None = None
    export_timestamp: str | None = None
    stated_token_state: str | None = None
    scope: str | None = None
    tenant: str | None = None
    remote_user: str | None = None


def _status(raw: Any) -> int:
    try:
        status = int(raw)
    except (TypeError, ValueError) as exc:
        raise InvalidItem(f"status: {raw!r} is not an HTTP status") from exc
    if not 100 <= status <= 599:
        raise InvalidItem(f"status: {status} is not an HTTP status")
    return status


def _target(target: str) -> tuple[str, bool]:
    parts = urlsplit(target)
    return parts.path or "/", bool(parse_qs(parts.query).get("token"))


def _request_target(request: str) -> str | None:
    pieces = request.split(" ")
    if len(pieces) != 3 or not pieces[1].startswith("/"):
        return None  # a garbled request line (scanners, TLS on a plain port): not a download
    return pieces[1]


def _time_local(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%d/%b/%Y:%H:%M:%S %z").astimezone(UTC)
    except ValueError as exc:
        raise InvalidItem(f"time_local: {text!r} is not nginx's $time_local") from exc


def _dash(value: str) -> str | None:
    return None if value in _EMPTY else value


def parse_text_line(raw: str, fmt: str) -> AccessLine:
    """Parse a `combined` or `upstreaminfo` line; :class:`InvalidItem` names what is wrong."""
    match = _COMBINED.match(raw)
    if match is None:
        raise InvalidItem(f"not an nginx {fmt} line")
    rest = match["rest"]
    request_id: str | None = None
    upstream_status: str | None = None
    if fmt == "combined":
        if rest.strip():
            raise InvalidItem("not an nginx combined line (extra fields: another format?)")
    else:
        extra = _UPSTREAMINFO_REST.match(rest)
        if extra is None:
            raise InvalidItem("not an ingress-nginx upstreaminfo line")
        # Retried upstreams are listed "a, b" (and "a : b" across groups); squeeze, then split.
        upstream = re.sub(r"\s*([,:])\s+", r"\1", extra["upstream"]).split(" ")
        if len(upstream) != 4:
            raise InvalidItem("upstreaminfo: expected upstream addr, length, time and status")
        upstream_status = "" if upstream[3] in _EMPTY else upstream[3]
        request_id = _dash(extra["req_id"])
    target = _request_target(match["request"])
    path, presented = _target(target) if target else (None, False)
    return AccessLine(
        at=_time_local(match["time"]),
        request_id=request_id,
        path=path,
        token_presented=presented,
        status=_status(match["status"]),
        size=int(match["bytes"]) if match["bytes"] != "-" else 0,
        upstream_status=upstream_status,
        remote_user=_dash(match["ruser"]),
    )


def _field(line: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = line.get(key)
        if value not in _EMPTY:
            return value
    return None


def parse_json_line(line: dict[str, Any]) -> AccessLine:
    """An nginx `escape=json` line (the documented `qdjson` keys or ingress-nginx's names)."""
    target = _field(line, "request_uri", "uri", "path")
    if not isinstance(target, str):
        raise InvalidItem("request_uri: missing or not a string")
    path, presented = _target(target)
    args = line.get("args")
    if isinstance(args, str) and parse_qs(args).get("token"):
        presented = True
    presented = presented or bool(_field(line, "http_authorization"))
    raw_bytes = _field(line, "bytes", "body_bytes_sent", "bytes_sent") or 0
    try:
        size = max(int(raw_bytes), 0)
    except (TypeError, ValueError) as exc:
        raise InvalidItem(f"bytes: {raw_bytes!r} is not a byte count") from exc
    upstream_status: str | None = None
    if "upstream_status" in line:
        upstream_status = str(_field(line, "upstream_status") or "")
    stated = _field(line, "token_state", "upstream_http_x_export_token_state")

    def text(*keys: str) -> str | None:
        value = _field(line, *keys)
        return str(value) if value is not None else None

    return AccessLine(
        at=parse_time(_field(line, "time_iso8601", "time", "timestamp"), field="time"),
        request_id=text("request_id", "req_id"),
        path=path,
        token_presented=presented,
        status=_status(_field(line, "status")),
        size=size,
        upstream_status=upstream_status,
        export_id=text("export_id", "upstream_http_x_export_id"),
        export_user=text("export_user", "upstream_http_x_export_user"),
        export_timestamp=text("export_timestamp", "upstream_http_x_export_timestamp"),
        stated_token_state=str(stated).lower() if stated else None,
        scope=text("upstream_http_x_export_scope"),
        tenant=text("http_x_tenant", "tenant"),
        remote_user=text("remote_user"),
    )


def _answered_by(line: AccessLine) -> str:
    if line.upstream_status is None or line.upstream_status:
        return "application"  # an upstream answered (or the format cannot say)
    return "limiter" if line.status in LIMITER_STATUSES else "proxy"


def access_row(line: AccessLine, *, key: str) -> dict[str, Any]:
    """Map a parsed access-log line to an `export_events` row (``key``: its event id)."""
    answered_by = _answered_by(line)
    if answered_by != "application":
        state = "not_checked"
    elif line.stated_token_state in TOKEN_STATES:
        state = str(line.stated_token_state)
    elif not line.token_presented:
        state = "missing"
    elif line.status in (401, 403):
        state = "invalid"
    else:
        state = "valid"  # the upstream answered without refusing the token
    user = line.export_user or line.remote_user
    return {
        "event_id": key[:100],
        "export_id": line.export_id[:100] if line.export_id else None,
        "ts": line.at,
        "user": user[:200] if user and answered_by == "application" else None,
        "tenant": line.tenant[:200] if line.tenant else None,
        "route": (line.path or "/")[:500],
        "status": line.status,
        "bytes": line.size,
        "token_state": state,
        "token_scope": line.scope[:200] if line.scope else None,
        "watermarked": bool(line.export_id and line.export_user),
        "answered_by": answered_by,
        "reason": refusal_reason(line.status, state, answered_by),
        "in_proxy_log": True,
    }


def transform_access_log_line(
    line: Any, *, route_pattern: re.Pattern[str] | None = None
) -> dict[str, Any] | None:
    """Map one JSON access-log line to an `export_events` row; None outside ``route_pattern``."""
    if not isinstance(line, dict):
        raise InvalidItem("line: expected a JSON object")
    parsed = parse_json_line(line)
    if route_pattern is not None and not route_pattern.search(parsed.path or ""):
        return None
    return access_row(parsed, key=parsed.request_id or _line_key(line))


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


# --------------------------------------------------------------------------------------------
# Loading: one event per request
# --------------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    """What a load did: `result` (stored/duplicates), `merged` into the console's own events."""

    result: IngestResult = field(default_factory=IngestResult)
    merged: int = 0


def record_app_event(session: Session, row: dict[str, Any]) -> bool:
    """Store the console's own event (not seen by a proxy yet); False when the id was taken."""
    row = {**row, "in_proxy_log": False}
    return upsert(session, ExportEvent, [row], conflict=("event_id",)).inserted == 1


def _chunks(items: list[str], size: int = 500) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _as_limiter(row: dict[str, Any]) -> dict[str, Any]:
    return row | {
        "answered_by": "limiter",
        "token_state": "not_checked",
        "user": None,
        "export_id": None,
        "watermarked": False,
        "reason": "limiter",
    }


def load_proxy_rows(
    session: Session,
    keyed: list[dict[str, Any]],
    keyless: list[dict[str, Any]],
    *,
    unsure: set[str] | None = None,
) -> LoadResult:
    """Store proxy-side rows, merging each into the console's event for the same request.

    ``keyed`` rows carry the request id as `event_id`: an existing console event with that id
    is marked ``in_proxy_log`` (merged), one already marked is a duplicate, else the row is
    inserted. ``keyless`` rows (no request id: `combined`) are matched on route, status, size
    and time; their key is kept on the event (``proxy_key``) so a re-import adds nothing.
    A keyless row in ``unsure`` (its format cannot say who answered) that matches no console
    event and has a limiter status (429/503) is the limiter's refusal.
    """
    out = LoadResult()
    unique = {r["event_id"]: r for r in keyed}
    out.result.duplicates += len(keyed) - len(unique)
    seen: dict[str, bool] = {}
    for part in _chunks(list(unique)):
        for event_id, logged in session.execute(
            select(ExportEvent.event_id, ExportEvent.in_proxy_log).where(
                ExportEvent.event_id.in_(part)
            )
        ):
            seen[event_id] = bool(logged)
    fresh = [r for k, r in unique.items() if k not in seen]
    merge = [k for k, logged in seen.items() if not logged]
    out.result.duplicates += sum(1 for logged in seen.values() if logged)
    for part in _chunks(merge):
        session.execute(
            update(ExportEvent).where(ExportEvent.event_id.in_(part)).values(in_proxy_log=True)
        )
    out.merged += len(merge)

    if keyless:
        keys = [r["event_id"] for r in keyless]
        known: set[str] = set()
        for part in _chunks(keys):
            known.update(
                session.scalars(select(ExportEvent.event_id).where(ExportEvent.event_id.in_(part)))
            )
            known.update(
                k
                for k in session.scalars(
                    select(ExportEvent.proxy_key).where(ExportEvent.proxy_key.in_(part))
                )
                if k
            )
        todo = [r for r in keyless if r["event_id"] not in known]
        out.result.duplicates += len(keyless) - len(todo)
        if todo:
            start = min(r["ts"] for r in todo) - MERGE_BEFORE
            end = max(r["ts"] for r in todo) + MERGE_AFTER
            candidates: dict[tuple[str, int, int], list[tuple[datetime, int]]] = {}
            for row_id, route, status, size, ts in session.execute(
                select(
                    ExportEvent.id,
                    ExportEvent.route,
                    ExportEvent.status,
                    ExportEvent.bytes,
                    ExportEvent.ts,
                )
                .where(
                    ExportEvent.in_proxy_log.is_(False),
                    ExportEvent.proxy_key.is_(None),
                    ExportEvent.answered_by == "application",
                    ExportEvent.ts >= start,
                    ExportEvent.ts <= end,
                )
                .order_by(ExportEvent.ts, ExportEvent.id)
            ):
                candidates.setdefault((route, status, size), []).append((ts, row_id))
            for row in todo:
                pool = candidates.get((row["route"], row["status"], row["bytes"]), [])
                hit = next(
                    (
                        i
                        for i, (ts, _) in enumerate(pool)
                        if row["ts"] - MERGE_BEFORE <= ts <= row["ts"] + MERGE_AFTER
                    ),
                    None,
                )
                if hit is None:
                    doubt = unsure is not None and row["event_id"] in unsure
                    limited = doubt and row["status"] in LIMITER_STATUSES
                    fresh.append(_as_limiter(row) if limited else row)
                    continue
                _, row_id = pool.pop(hit)
                session.execute(
                    update(ExportEvent)
                    .where(ExportEvent.id == row_id)
                    .values(in_proxy_log=True, proxy_key=row["event_id"])
                )
                out.merged += 1
    out.result.add(upsert(session, ExportEvent, fresh, conflict=("event_id",)))
    return out


def load_export_events(session: Session, rows: list[dict[str, Any]]) -> IngestResult:
    """Upsert gateway/proxy export events, merging into the console's own (retries add nothing)."""
    loaded = load_proxy_rows(session, rows, [])
    loaded.result.stored += loaded.merged
    return loaded.result


# --------------------------------------------------------------------------------------------
# POST /ingest/exports and `quarterdeck collect exports`
# --------------------------------------------------------------------------------------------


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


def _refuse(session: Session, reason: str, body: Any, received_at: datetime) -> IngestResult:
    result = IngestResult(reasons=[reason], refused=reason)
    result.rejected = dead_letter(session, [(None, reason, body)], received_at=received_at)
    return result


def receive_export_lines(session: Session, body: bytes, *, received_at: datetime) -> IngestResult:
    """`POST /ingest/exports`'s one call: JSON lines in, counts out.

    Lines the store cannot hold are dead-lettered and the rest stored; one invalid line
    refuses the batch (``refused``: a 400 naming every bad line; they are dead-lettered,
    nothing is stored) so the sender fixes and resends it whole. Dead letters are redacted.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        result = _refuse(session, "body: not UTF-8 text", body, received_at)
        record_sync_run(session, source=SOURCE, started_at=received_at, result=result)
        return result
    lines = text.splitlines()
    rows, errors, poison = classify_export_lines(text)
    bad = sorted([*errors, *poison], key=lambda e: e.line)
    if not errors and not rows and not poison:
        result = _refuse(session, "body: expected JSON lines of export events", body, received_at)
    else:
        dead = poison if not errors else bad
        result = IngestResult() if errors else load_export_events(session, rows)
        if errors:
            result.refused = f"{len(errors)} invalid line(s): nothing stored"
        if dead:
            result.rejected = dead_letter(
                session,
                [(e.line - 1, str(e), lines[e.line - 1]) for e in dead],
                received_at=received_at,
            )
            result.reasons = [str(e) for e in dead]
    record_sync_run(session, source=SOURCE, started_at=received_at, result=result)
    return result


def ingest_export_lines(session: Session, text: str, *, received_at: datetime) -> IngestResult:
    """Store JSON-lines export events; unparsable or invalid lines are dead-lettered."""
    lines = text.splitlines()
    rows, errors = parse_export_lines(text)
    result = load_export_events(session, rows)
    if errors:
        rejects = [(e.line - 1, str(e), lines[e.line - 1]) for e in errors]
        result.rejected = dead_letter(session, rejects, received_at=received_at)
        result.reasons = [str(e) for e in errors]
    return result


@dataclass
class AccessLogImport:
    """One access-log import: counts, lines merged into console events, the lines' time span."""

    result: IngestResult
    merged: int = 0
    first: datetime | None = None
    last: datetime | None = None


def import_access_log(
    session: Session,
    lines: Iterable[str],
    *,
    received_at: datetime,
    fmt: str = "json",
    route_pattern: re.Pattern[str] | None = None,
) -> AccessLogImport:
    """Store a proxy access log (``fmt``: json, combined, upstreaminfo) as export events.

    A JSON line carrying `route` is a gateway export event. Lines outside ``route_pattern``
    are counted as ignored; a line not in ``fmt`` is dead-lettered (redacted) with its line
    number and why, never a crash. Re-importing the same file adds nothing.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown access-log format {fmt!r}: choose from {', '.join(FORMATS)}")
    result = IngestResult()
    keyed: list[dict[str, Any]] = []
    keyless: list[dict[str, Any]] = []
    rejects: list[tuple[int | None, str, Any]] = []
    occurrences: Counter[str] = Counter()
    unsure: set[str] = set()
    for index, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            if fmt == "json":
                item = _parse_line(raw)
                problem = storage_problem(item, where="line")
                if problem is not None:
                    raise InvalidItem(problem)
                if isinstance(item, dict) and "route" in item:
                    row: dict[str, Any] | None = transform_export_event(item)
                    if row is not None and not route_pattern_ok(row["route"], route_pattern):
                        row = None
                    if row is not None:
                        keyed.append(row)
                    else:
                        result.ignored += 1
                    continue
                if not isinstance(item, dict):
                    raise InvalidItem("line: expected a JSON object")
                parsed = parse_json_line(item)
            else:
                parsed = parse_text_line(raw.rstrip("\r\n"), fmt)
        except (InvalidItem, JsonTooDeep) as exc:
            rejects.append((index, f"line {index + 1}: {exc}", raw))
            continue
        if parsed.path is None or not route_pattern_ok(parsed.path, route_pattern):
            result.ignored += 1
            continue
        if parsed.request_id:
            keyed.append(access_row(parsed, key=parsed.request_id))
        else:
            digest = hashlib.sha256(raw.rstrip("\r\n").encode()).hexdigest()[:32]
            occurrences[digest] += 1
            key = f"log-{digest}-{occurrences[digest]}"
            if parsed.upstream_status is None:
                unsure.add(key)
            keyless.append(access_row(parsed, key=key))
    loaded = load_proxy_rows(session, keyed, keyless, unsure=unsure)
    result.merge(loaded.result)
    if rejects:
        result.rejected = dead_letter(session, rejects, received_at=received_at)
        result.reasons = [redact(r) for _, r, _ in rejects]
    times = [r["ts"] for r in (*keyed, *keyless)]
    return AccessLogImport(
        result=result,
        merged=loaded.merged,
        first=min(times) if times else None,
        last=max(times) if times else None,
    )


def route_pattern_ok(route: str, pattern: re.Pattern[str] | None) -> bool:
    return pattern is None or bool(pattern.search(route))


def ingest_access_log(
    session: Session,
    lines: Iterable[str],
    *,
    received_at: datetime,
    route_pattern: re.Pattern[str] | None = None,
    fmt: str = "json",
) -> IngestResult:
    """:func:`import_access_log`'s counts (lines merged into console events count as stored)."""
    done = import_access_log(
        session, lines, received_at=received_at, fmt=fmt, route_pattern=route_pattern
    )
    done.result.stored += done.merged
    return done.result
