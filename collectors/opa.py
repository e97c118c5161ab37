"""OPA as a source: decision-log events (decision_logs plugin) and status reports (status plugin).

OPA retries every non-2xx upload forever and a refused chunk blocks the ones behind it, so the
loaders never fail a batch for a bad event: valid events are stored, invalid ones are
dead-lettered with their index and reason, and duplicates (OPA re-sends failed chunks) are
absorbed by the `decision_id` key.

An event the store cannot hold — nested deeper than `MAX_JSON_DEPTH`, a NUL character or a lone
surrogate anywhere in it (PostgreSQL text/JSONB refuses both), NaN, more than
`DecisionOptions.max_event_chars` of JSON — is one more invalid event: dead-lettered with its
reason while the rest of the chunk is stored. :func:`receive_decision_log` is the receiver's one
call: body bytes in, stored/duplicate/dead-lettered counts out.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from collectors.base import (
    MAX_ITEM_CHARS,
    MAX_JSON_DEPTH,
    InvalidItem,
    PayloadTooLarge,
    loads_bounded,
    loads_items,
    parse_optional_time,
    parse_time,
    refuse_body,
    require,
    storage_problem,
)
from store.ingest import IngestResult, UpsertResult, record_rejects, record_sync_run, upsert
from store.models import OpaDecision, OpaStatusReport

SOURCE_LOGS = "opa.logs"
SOURCE_STATUS = "opa.status"
DRY_RUN_MODES = frozenset({"dry-run", "dryrun", "audit", "warn"})
_GZIP_MAGIC = b"\x1f\x8b"
_INFLATE_STEP = 256 * 1024


class BadPayload(ValueError):
    """The body cannot be read at all (corrupt gzip, not JSON); the message says why."""


def inflate(body: bytes, *, limit: int) -> bytes:
    """Gunzip ``body`` without ever holding more than ``limit`` inflated bytes.

    Decompression runs in bounded steps (``max_length``), so a gzip bomb stops at the limit
    instead of exhausting memory. Concatenated gzip members are accepted, as gzip(1) does.
    """
    out = bytearray()
    data = body
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        pending = data
        try:
            while pending:
                room = limit - len(out)
                out += inflater.decompress(pending, max(1, min(_INFLATE_STEP, room + 1)))
                if len(out) > limit:
                    raise PayloadTooLarge(f"body inflates beyond the {limit} byte limit")
                pending = inflater.unconsumed_tail
                if inflater.eof:
                    break
            if not inflater.eof:
                out += inflater.flush()
                if len(out) > limit:
                    raise PayloadTooLarge(f"body inflates beyond the {limit} byte limit")
                if not inflater.eof:
                    raise BadPayload("gzip body is truncated")
        except zlib.error as exc:
            raise BadPayload(f"gzip body is corrupt ({exc})") from exc
        data = inflater.unused_data
    return bytes(out)


def decoded_bytes(body: bytes, *, content_encoding: str | None, limit: int) -> bytes:
    """The upload's JSON bytes: gunzipped (by header or magic bytes) or as sent, ≤ ``limit``.

    OPA always gzips decision logs and never gzips status reports; both are accepted either way
    so a person can replay a body with curl.
    """
    encoding = (content_encoding or "").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip"):
        raise BadPayload(f"Content-Encoding {encoding!r} is not supported (use gzip)")
    if encoding in ("gzip", "x-gzip") or body[:2] == _GZIP_MAGIC:
        return inflate(body, limit=limit)
    if len(body) > limit:
        raise PayloadTooLarge(f"body is over the {limit} byte limit")
    return body


def decode_chunk(body: bytes, *, content_encoding: str | None, limit: int) -> Any:
    """Decode one upload to a JSON value (bounded depth: never a `RecursionError`)."""
    data = decoded_bytes(body, content_encoding=content_encoding, limit=limit)
    try:
        return loads_bounded(data, max_depth=MAX_JSON_DEPTH + 1)
    except UnicodeDecodeError as exc:
        raise BadPayload(f"body is not UTF-8 JSON ({exc.reason})") from exc
    except ValueError as exc:
        raise BadPayload(f"body is not JSON ({exc})") from exc


def decode_events(
    body: bytes, *, content_encoding: str | None, limit: int, max_depth: int = MAX_JSON_DEPTH
) -> tuple[list[tuple[int, Any]], list[tuple[int | None, str, Any]]]:
    """Decode a decision-log chunk event by event: ``(index, event)`` pairs and rejects.

    An event nested too deep, not UTF-8 or not JSON is its own reject; `BadPayload` only when
    the body is not a JSON array at all, `PayloadTooLarge` when it inflates past ``limit``.
    """
    data = decoded_bytes(body, content_encoding=content_encoding, limit=limit)
    try:
        return loads_items(data, max_depth=max_depth, object_items=True)
    except ValueError as exc:
        raise BadPayload(f"body: {exc} (expected a JSON array of decision events)") from exc


@dataclass(frozen=True)
class DecisionOptions:
    """How to read decisions: which result field means "allow", which label is the environment,
    which label says who the OPA is (`instance_label`, else `labels.id`, as for status)."""

    result_field: str = "allow"
    environment_label: str = "environment"
    instance_label: str = "instance"
    mode_label: str = "mode"
    max_depth: int = MAX_JSON_DEPTH
    max_event_chars: int = MAX_ITEM_CHARS


def _bounded(value: str, field: str, limit: int) -> str:
    """Refuse what the store's columns cannot hold (PostgreSQL would fail the whole chunk).

    A chunk that fails to store is answered 503 and OPA re-sends it forever, so one oversized
    or NUL-bearing field must be this event's reject, not the whole chunk's failure.
    """
    if len(value) > limit:
        raise InvalidItem(f"{field}: longer than {limit} characters")
    if "\x00" in value:
        raise InvalidItem(f"{field}: contains a NUL character")
    return value


def _optional_label(mapping: dict[str, Any], key: str, limit: int) -> str | None:
    value = mapping.get(key)
    if value is None:
        return None
    return _bounded(str(value), key, limit)


def _allowed(result: Any, field: str) -> bool | None:
    if isinstance(result, bool):
        return result
    if isinstance(result, dict):
        value = result.get(field)
        if isinstance(value, bool):
            return value
    return None


def transform_decision(
    event: Any, *, received_at: datetime, options: DecisionOptions
) -> dict[str, Any]:
    """Validate one decision event and map it to an `opa_decisions` row."""
    if not isinstance(event, dict):
        raise InvalidItem("event: expected a JSON object")
    decision_id = require(event, "decision_id", str)
    if not decision_id.strip() or len(decision_id) > 100:
        raise InvalidItem("decision_id: must be 1–100 characters")
    labels = require(event, "labels", dict)
    instance = instance_identity(labels, options.instance_label)
    timestamp = parse_time(event.get("timestamp"), field="timestamp")
    path = event.get("path")
    if path is None and event.get("query"):
        path = "query"
    if not isinstance(path, str) or not path.strip("/"):
        raise InvalidItem("path: missing (and no query)")
    bundles = event.get("bundles") or {}
    if not isinstance(bundles, dict):
        raise InvalidItem("bundles: expected an object of {name: {revision}}")
    revisions = {
        name: (info or {}).get("revision")
        for name, info in bundles.items()
        if isinstance(info, dict)
    }
    result = event.get("result")
    mode = str(labels.get(options.mode_label, "")).lower()
    dry_run = mode in DRY_RUN_MODES or (isinstance(result, dict) and result.get("dry_run") is True)
    erased = event.get("erased") or []
    masked = event.get("masked") or []
    metrics = event.get("metrics") or {}
    nd_builtin_cache = event.get("nd_builtin_cache")
    if nd_builtin_cache is not None and not isinstance(nd_builtin_cache, dict):
        raise InvalidItem("nd_builtin_cache: expected an object of {builtin: {args: value}}")
    return {
        "decision_id": _bounded(decision_id, "decision_id", 100),
        "timestamp": timestamp,
        "received_at": received_at,
        "instance_id": instance,
        "environment": _optional_label(labels, options.environment_label, 50),
        "opa_version": _optional_label(labels, "version", 50),
        "path": _bounded(path.strip("/"), "path", 500),
        "allowed": _allowed(result, options.result_field),
        "dry_run": dry_run,
        "bundles": revisions,
        "erased": erased if isinstance(erased, list) else [],
        "masked": masked if isinstance(masked, list) else [],
        "input": event.get("input"),
        "result": result,
        "requested_by": _optional_label(event, "requested_by", 200),
        "metrics": metrics if isinstance(metrics, dict) else {},
        "nd_builtin_cache": nd_builtin_cache,
    }


def ingest_decisions(
    session: Session,
    events: Any,
    *,
    received_at: datetime,
    options: DecisionOptions | None = None,
) -> IngestResult:
    """Store a decoded decision-log chunk (a JSON array); invalid events are dead-lettered."""
    if not isinstance(events, list):
        result = IngestResult()
        result.rejected = record_rejects(
            session,
            source=SOURCE_LOGS,
            rejects=[(None, "body: expected a JSON array of decision events", events)],
            received_at=received_at,
        )
        result.reasons = ["body: expected a JSON array of decision events"]
        return result
    return _ingest_events(
        session, list(enumerate(events)), [], received_at=received_at, options=options
    )


def _ingest_events(
    session: Session,
    events: list[tuple[int, Any]],
    rejects: list[tuple[int | None, str, Any]],
    *,
    received_at: datetime,
    options: DecisionOptions | None,
) -> IngestResult:
    options = options or DecisionOptions()
    result = IngestResult()
    rows: list[dict[str, Any]] = []
    rejects = list(rejects)
    for index, event in events:
        problem = storage_problem(
            event, max_depth=options.max_depth, max_chars=options.max_event_chars, where="event"
        )
        if problem is not None:
            rejects.append((index, problem, event))
            continue
        try:
            rows.append(transform_decision(event, received_at=received_at, options=options))
        except InvalidItem as exc:
            rejects.append((index, str(exc), event))
    result.add(load_decisions(session, rows))
    if rejects:
        rejects.sort(key=lambda r: -1 if r[0] is None else r[0])
        result.rejected = record_rejects(
            session, source=SOURCE_LOGS, rejects=rejects, received_at=received_at
        )
        result.reasons = [f"[{i}] {r}" for i, r, _ in rejects]
    return result


def receive_decision_log(
    session: Session,
    body: bytes,
    *,
    content_encoding: str | None,
    received_at: datetime,
    limit: int,
    options: DecisionOptions | None = None,
) -> IngestResult:
    """The decision-log receiver's one call: store a chunk as OPA sent it (gzip or not).

    Valid events are stored, every other event dead-lettered with its index and reason, and the
    run is recorded for Ingest health. A body that is not a JSON array at all is dead-lettered
    whole and the result says so in ``refused`` (the receiver answers 400). Raises
    `PayloadTooLarge` (413, nothing stored) and lets storage errors through (the receiver
    answers 503 and OPA's retry lands).
    """
    options = options or DecisionOptions()
    try:
        events, rejects = decode_events(
            body, content_encoding=content_encoding, limit=limit, max_depth=options.max_depth
        )
    except BadPayload as exc:
        result = refuse_body(
            session, source=SOURCE_LOGS, reason=str(exc), body=body, received_at=received_at
        )
    else:
        result = _ingest_events(session, events, rejects, received_at=received_at, options=options)
    record_sync_run(session, source=SOURCE_LOGS, started_at=received_at, result=result)
    return result


def receive_status(
    session: Session,
    body: bytes,
    *,
    content_encoding: str | None,
    received_at: datetime,
    limit: int,
    environment_label: str = "environment",
    instance_label: str = "instance",
    max_chars: int | None = None,
) -> IngestResult:
    """The status receiver's one call: decode one status report (bounded) and store it.

    A report the store cannot hold (NUL, lone surrogate, too deep) is dead-lettered, not
    refused: OPA re-sends status on its own schedule, and a 2xx keeps it from retrying a
    report that can never be stored. An unreadable body is dead-lettered and ``refused``.
    """
    try:
        report = decode_chunk(body, content_encoding=content_encoding, limit=limit)
    except BadPayload as exc:
        result = refuse_body(
            session, source=SOURCE_STATUS, reason=str(exc), body=body, received_at=received_at
        )
    else:
        problem = storage_problem(report, max_chars=max_chars, where="status")
        if problem is not None:
            result = IngestResult(reasons=[problem])
            result.rejected = record_rejects(
                session,
                source=SOURCE_STATUS,
                rejects=[(None, problem, report)],
                received_at=received_at,
            )
        else:
            result = ingest_status(
                session,
                report,
                received_at=received_at,
                environment_label=environment_label,
                instance_label=instance_label,
            )
    record_sync_run(session, source=SOURCE_STATUS, started_at=received_at, result=result)
    return result


_DECISION_FIELDS = (
    "decision_id",
    "timestamp",
    "received_at",
    "instance_id",
    "environment",
    "opa_version",
    "path",
    "allowed",
    "dry_run",
    "bundles",
    "erased",
    "masked",
    "input",
    "result",
    "requested_by",
    "metrics",
    "nd_builtin_cache",
)


_JSON_FIELDS = frozenset(
    {"bundles", "erased", "masked", "input", "result", "metrics", "nd_builtin_cache"}
)


def _sqlite_value(value: Any) -> Any:
    """A value as SQLAlchemy's SQLite UTC timestamp column stores it (naive UTC text)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def load_decisions(session: Session, rows: list[dict[str, Any]]) -> UpsertResult:
    """Insert decision rows, skipping `decision_id`s already stored; count the new ones.

    The generic upsert renders one multi-row VALUES statement with RETURNING, which costs more
    to build than to run at OPA's chunk sizes. Here each dialect gets one statement over a
    single JSON parameter (SQLite `json_each`, PostgreSQL `json_populate_recordset`); the
    rowcount (SQLite) or RETURNING (PostgreSQL) counts the inserted rows.
    """
    result = UpsertResult()
    if not rows:
        return result
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        # `->` yields JSON text and `->>` SQL values: SQLite parses the batch in C, once.
        select_list = ", ".join(
            f"value -> '$.{k}'" if k in _JSON_FIELDS else f"value ->> '$.{k}'"
            for k in _DECISION_FIELDS
        )
        # Unescaped UTF-8, so full-text search sees "Übergröße", not an escaped "u00dc…".
        payload = json.dumps(
            [{k: _sqlite_value(row[k]) for k in _DECISION_FIELDS} for row in rows],
            ensure_ascii=False,
        )
        result.inserted = int(
            session.connection()
            .exec_driver_sql(
                f"INSERT INTO opa_decisions ({', '.join(_DECISION_FIELDS)}) "
                f"SELECT {select_list} FROM json_each(?) WHERE true "
                "ON CONFLICT (decision_id) DO NOTHING",
                (payload,),
            )
            .rowcount
        )
    elif dialect == "postgresql":
        columns = ", ".join(_DECISION_FIELDS)
        payload = json.dumps(
            [{k: row[k] for k in _DECISION_FIELDS} for row in rows],
            default=_json_default,
            ensure_ascii=False,
        )
        inserted = session.execute(
            text(
                f"INSERT INTO opa_decisions ({columns}) "
                f"SELECT {columns} FROM json_populate_recordset(NULL::opa_decisions, :rows) "
                "ON CONFLICT (decision_id) DO NOTHING RETURNING 1"
            ),
            {"rows": payload},
        ).all()
        result.inserted = len(inserted)
    else:
        return upsert(session, OpaDecision, rows, conflict=("decision_id",))
    result.existing = len(rows) - result.inserted
    return result


# Drop/buffer counters OPA 1.9 puts in `metrics.prometheus` of a status report (plain integers;
# see reference/captures/opa-wire/status/size-buffer-with-drop-counters.raw.json).
DROP_COUNTERS = (
    # size buffer (the default): chunks dropped when the buffer's byte limit was exceeded
    "counter_decision_logs_dropped_buffer_size_limit_bytes_exceeded",
    # both buffers: size buffer chunks / event buffer events dropped on a full buffer
    "counter_decision_logs_dropped_buffer_size_limit_exceeded",
)
BUFFER_COUNTERS = ("counter_enc_soft_limit_scale_up", "counter_enc_uncompressed_limit_scale_up")
_MAX_MESSAGE = 2000


def _clean(value: Any, limit: int = _MAX_MESSAGE) -> str:
    text = str(value).replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8")[:limit]


def instance_identity(labels: dict[str, Any], instance_label: str = "instance") -> str:
    """Who an OPA is: its ``instance_label`` label, else `labels.id` (a new UUID per process)."""
    value = labels.get(instance_label) if instance_label else None
    if isinstance(value, str) and value.strip():
        return _bounded(value.strip(), f"labels.{instance_label}", 200)
    identity = require(labels, "id", str, where="labels")
    return _bounded(identity, "labels.id", 200)


def decision_log_state(report: dict[str, Any]) -> dict[str, Any] | None:
    """What a status report says about decision-log delivery (None when it says nothing).

    Keys: `state` (plugins.decision_logs.state), `code`/`message`/`http_code` (the
    `decision_logs` object, set while uploads fail), and the DROP_COUNTERS/BUFFER_COUNTERS
    found in `metrics.prometheus` under their OPA names.
    """
    out: dict[str, Any] = {}
    plugins = report.get("plugins")
    if isinstance(plugins, dict) and isinstance(plugins.get("decision_logs"), dict):
        state = plugins["decision_logs"].get("state")
        if isinstance(state, str):
            out["state"] = _clean(state, 50)
    info = report.get("decision_logs")
    if isinstance(info, dict):
        for key in ("code", "message"):
            if info.get(key) is not None:
                out[key] = _clean(info[key])
        if isinstance(info.get("http_code"), int) and not isinstance(info["http_code"], bool):
            out["http_code"] = info["http_code"]
    metrics = report.get("metrics")
    prometheus = metrics.get("prometheus") if isinstance(metrics, dict) else None
    if isinstance(prometheus, dict):
        for name in DROP_COUNTERS + BUFFER_COUNTERS:
            value = prometheus.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[name] = int(value)
    return out or None


def transform_status(
    report: Any,
    *,
    received_at: datetime,
    environment_label: str = "environment",
    instance_label: str = "instance",
) -> list[dict[str, Any]]:
    """Map one status-plugin report to one `opa_status_reports` row per bundle.

    `instance_id` is the identity label (``instance_label``, falling back to `labels.id`), so
    a restarted OPA (new `labels.id`) stays one instance; `process_id` keeps `labels.id`.
    A report without bundles (OPA's first of a process) stores nothing.
    """
    if not isinstance(report, dict):
        raise InvalidItem("status: expected a JSON object")
    labels = require(report, "labels", dict)
    instance = instance_identity(labels, instance_label)
    process = labels.get("id")
    bundles = report.get("bundles") or {}
    if not isinstance(bundles, dict):
        raise InvalidItem("bundles: expected an object keyed by bundle name")
    delivery = decision_log_state(report)
    rows = []
    for name, info in bundles.items():
        if not isinstance(info, dict):
            raise InvalidItem(f"bundles.{name}: expected an object")
        errors = info.get("errors") or []
        message = info.get("message") or ("; ".join(map(str, errors)) if errors else None)
        revision = info.get("active_revision") or None
        code = info.get("code") or None
        rows.append(
            {
                "instance_id": instance,
                "process_id": None
                if not isinstance(process, str)
                else _bounded(process, "labels.id", 200),
                "environment": _optional_label(labels, environment_label, 50),
                "bundle": _bounded(str(info.get("name") or name), f"bundles.{name}.name", 200),
                "active_revision": None
                if revision is None
                else _bounded(str(revision), f"bundles.{name}.active_revision", 200),
                "last_successful_activation": parse_optional_time(
                    info.get("last_successful_activation"),
                    field=f"bundles.{name}.last_successful_activation",
                ),
                "code": None if code is None else _bounded(str(code), f"bundles.{name}.code", 100),
                "message": None if message is None else _clean(message),
                "decision_logs": delivery,
                "reported_at": received_at,
            }
        )
    return rows


def ingest_status(
    session: Session,
    report: Any,
    *,
    received_at: datetime,
    environment_label: str = "environment",
    instance_label: str = "instance",
) -> IngestResult:
    """Store one status report (history is kept: drift over time stays visible)."""
    result = IngestResult()
    try:
        rows = transform_status(
            report,
            received_at=received_at,
            environment_label=environment_label,
            instance_label=instance_label,
        )
    except InvalidItem as exc:
        result.rejected = record_rejects(
            session,
            source=SOURCE_STATUS,
            rejects=[(None, str(exc), report)],
            received_at=received_at,
        )
        result.reasons = [str(exc)]
        return result
    result.add(
        upsert(session, OpaStatusReport, rows, conflict=("instance_id", "bundle", "reported_at"))
    )
    return result
