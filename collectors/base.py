"""Shared plumbing for every source: parsing helpers, rejects and the `run_sync` bookkeeping.

Each source module follows `fetch_* → transform_* → load_*`; `transform_*` functions are pure
and raise :class:`InvalidItem` with a reason a person can act on.

Bounded JSON and storability (one rule for every receiver): :func:`loads_bounded` refuses nesting
deeper than :data:`MAX_JSON_DEPTH` with a `ValueError` (never a `RecursionError`);
:func:`loads_items` parses a JSON array item by item, so one item nested too deep or not JSON
is that item's reject, not the batch's; :func:`storage_problem` names what the store cannot
hold in one item (too deep, a NUL character, a lone surrogate, NaN/Infinity, oversize).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from store.db import session_scope
from store.ingest import IngestResult, record_rejects, record_sync_run, utcnow

log = logging.getLogger(__name__)

_FRACTION = re.compile(r"(\.\d{1,6})\d*")

MAX_JSON_DEPTH = 200
"""Deepest nesting one item may have (OPA inputs, webhooks); deeper is a 400 or a dead letter."""
MAX_ITEM_CHARS = 1024 * 1024
"""Largest item (as compact JSON text) a receiver stores; larger is dead-lettered."""

# A JSON string token (escapes included), a bracket, a comma, or an unterminated quote.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]|"', re.DOTALL)
_STR_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|"', re.DOTALL)
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidItem(ValueError):
    """One item of a batch cannot be stored; the message is the reason shown on Ingest health."""


class PayloadTooLarge(ValueError):
    """A body (or its item count) is over the receiver's limit; the receiver answers 413."""


class JsonTooDeep(ValueError):
    """JSON nested deeper than the limit (raised before parsing, never a `RecursionError`)."""


def json_text_depth(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> int:
    """The deepest bracket nesting in JSON text (strings skipped), without parsing it.

    Stops counting once past ``limit``, so a body nested 100 000 deep costs one scan up to the
    limit. Strings are skipped by a regular expression, not byte by byte.
    """
    depth = deepest = 0
    if isinstance(text, bytes):
        for match in _TOKENS.finditer(text):
            token = match.group()
            first = token[0]
            if first == 0x22:  # a string, or an unterminated one (the rest is inside it)
                if len(token) == 1:
                    break
                continue
            if first in _OPEN:
                depth += 1
                if depth > deepest:
                    deepest = depth
                    if deepest > limit:
                        return deepest
            elif first in _CLOSE:
                depth -= 1
        return deepest
    for found in _STR_TOKENS.finditer(text):
        char = found.group()
        if char[0] == '"':
            if len(char) == 1:
                break
            continue
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        else:
            depth -= 1
    return deepest


def loads_bounded(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads` that refuses nesting deeper than ``max_depth`` with a `ValueError`.

    The depth is checked on the text before parsing, so a body nested 100 000 deep costs one
    scan and a clear error instead of a `RecursionError` inside the decoder. Invalid UTF-8
    raises `UnicodeDecodeError` (a `ValueError` too).
    """
    if json_text_depth(text, max_depth) > max_depth:
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except RecursionError as exc:  # pragma: no cover - the depth check runs first
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels") from exc


def split_json_array(data: bytes) -> list[bytes] | None:
    """The raw text of each item of a top-level JSON array, or None when ``data`` is not one.

    Only brackets, commas and strings are looked at, so an item too deep for the parser or
    not JSON at all is still cut out whole and can be dead-lettered on its own.
    """
    stripped = data.strip()
    if not stripped.startswith(b"["):
        return None
    items: list[bytes] = []
    depth = 0
    start = 1
    end = None
    for match in _TOKENS.finditer(stripped):
        token = match.group()
        first = token[0]
        if first == 0x22:
            if len(token) == 1:
                return None  # an unterminated string
            continue
        if first in _OPEN:
            depth += 1
        elif first in _CLOSE:
            depth -= 1
            if depth == 0:
                end = match.start()
                break
            if depth < 0:
                return None
        elif depth == 1:  # a comma between two items
            items.append(stripped[start : match.start()])
            start = match.end()
    if end is None or stripped[end + 1 :].strip():
        return None
    last = stripped[start:end]
    if last.strip():
        items.append(last)
    elif items:
        return None  # a trailing comma
    if any(not item.strip() for item in items):
        return None
    return [item.strip() for item in items]


def loads_items(
    data: bytes, *, max_depth: int = MAX_JSON_DEPTH, object_items: bool = False
) -> tuple[list[tuple[int, Any]], list[tuple[int | None, str, Any]]]:
    """Parse a JSON array item by item: ``(index, item)`` pairs, ``(index, reason, raw)`` rejects.

    The whole array is parsed at once when it is within ``max_depth`` (plus the array itself)
    and valid; otherwise it is cut into items and each is parsed alone, so one item nested too
    deep, not UTF-8 or not JSON becomes that item's reject. Raises `ValueError` with a reason
    when ``data`` is not a JSON array at all, and — with ``object_items`` (items are events) —
    when an item nested too deep is not even an object: a body deep from its first bytes
    (`[[[[…`) is not a batch with one bad item, it is a bad body.
    """
    message = "expected a JSON array"
    if json_text_depth(data, max_depth + 1) <= max_depth + 1:
        try:
            value = json.loads(data)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            message = f"not JSON ({exc})"
        else:
            if not isinstance(value, list):
                raise ValueError("expected a JSON array")
            return list(enumerate(value)), []
    else:
        message = f"nested deeper than {max_depth + 1} levels outside any item of the array"
    parts = split_json_array(data)
    if parts is None:
        raise ValueError(message)
    items: list[tuple[int, Any]] = []
    rejects: list[tuple[int | None, str, Any]] = []
    for index, raw in enumerate(parts):
        try:
            items.append((index, loads_bounded(raw, max_depth=max_depth)))
        except UnicodeDecodeError as exc:
            rejects.append((index, f"item is not UTF-8 ({exc.reason})", raw))
        except ValueError as exc:
            if object_items and isinstance(exc, JsonTooDeep) and not raw.startswith(b"{"):
                raise ValueError(
                    f"nested deeper than {max_depth + 1} levels outside any object item"
                ) from exc
            rejects.append((index, f"item: {exc}", raw))
    return items, rejects


def _problem(value: Any, max_depth: int, max_chars: int | None) -> str | None:
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=str)
    except RecursionError:
        return f"nested deeper than {max_depth} levels"
    except ValueError:
        return "contains NaN or Infinity, which JSON cannot carry"
    if json_text_depth(text, max_depth) > max_depth:
        return f"nested deeper than {max_depth} levels"
    if _NUL_ESCAPE.search(text):
        return "contains a NUL character (\\u0000), which PostgreSQL cannot store"
    surrogate = _SURROGATE.search(text)
    if surrogate:
        return f"contains a lone surrogate (\\u{ord(surrogate.group()):04x}), which is not Unicode"
    if max_chars is not None and len(text) > max_chars:
        return f"{len(text)} characters of JSON, over the {max_chars} limit per item"
    return None


def storage_problem(
    item: Any,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    max_chars: int | None = MAX_ITEM_CHARS,
    where: str = "item",
) -> str | None:
    """Why the store cannot hold ``item`` (and so it must be dead-lettered), or None.

    PostgreSQL's text and JSONB refuse `\\u0000`; no UTF-8 encoder takes a lone surrogate;
    JSONB refuses NaN; nesting past ``max_depth`` and items over ``max_chars`` are refused by
    rule. An object's problem names the first top-level field that has it.
    """
    problem = _problem(item, max_depth, max_chars)
    if problem is None:
        return None
    if isinstance(item, dict) and not problem[0].isdigit():
        for key, value in item.items():
            if _problem(key, max_depth, None):
                return f"{where}: a field name {problem}"
            if _problem(value, max_depth - 1, None):
                return f"{key}: {problem}"
    return f"{where}: {problem}"


def parse_time(value: Any, *, field: str = "timestamp") -> datetime:
    """Parse an RFC 3339 / ISO-8601 string (ns precision allowed) or epoch seconds to aware UTC."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidItem(f"{field}: timestamp without a timezone")
        return value.astimezone(UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    if not isinstance(value, str) or not value:
        raise InvalidItem(f"{field}: missing or not a string")
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    # Go writes nanoseconds; Python keeps microseconds.
    text = _FRACTION.sub(lambda m: m.group(1), text, count=1)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidItem(f"{field}: {value!r} is not an RFC 3339 timestamp") from exc
    if parsed.tzinfo is None:
        raise InvalidItem(f"{field}: {value!r} has no timezone")
    return parsed.astimezone(UTC)


def parse_optional_time(value: Any, *, field: str) -> datetime | None:
    """Like :func:`parse_time` but ``None``/empty stays ``None``."""
    if value in (None, ""):
        return None
    return parse_time(value, field=field)


def require(mapping: Any, key: str, kind: type | tuple[type, ...], *, where: str = "") -> Any:
    """Return ``mapping[key]`` if present and of ``kind``, else raise :class:`InvalidItem`."""
    label = f"{where}.{key}" if where else key
    if not isinstance(mapping, dict):
        raise InvalidItem(f"{where or 'item'}: expected an object")
    if key not in mapping or mapping[key] is None:
        raise InvalidItem(f"{label}: missing")
    value = mapping[key]
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise InvalidItem(f"{label}: expected a number, got a boolean")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InvalidItem(f"{label}: expected {name}, got {type(value).__name__}")
    return value


def refuse_body(
    session: Session, *, source: str, reason: str, body: Any, received_at: datetime
) -> IngestResult:
    """Dead-letter an unreadable body whole; the result's ``refused`` makes the receiver say 400."""
    result = IngestResult(reasons=[reason], refused=reason)
    result.rejected = record_rejects(
        session, source=source, rejects=[(None, reason, body)], received_at=received_at
    )
    return result


def json_batch(
    body: bytes, *, max_depth: int = MAX_JSON_DEPTH
) -> tuple[list[tuple[int, Any]], list[tuple[int | None, str, Any]]]:
    """A JSON body holding one object or an array of them, item by item (see `loads_items`).

    Raises `ValueError` with a reason (`body: …`) when the body is empty, not JSON or nested
    too deep at its top.
    """
    stripped = body.strip()
    if not stripped:
        raise ValueError("body: empty, expected JSON")
    if stripped.startswith(b"["):
        try:
            return loads_items(stripped, max_depth=max_depth, object_items=True)
        except ValueError as exc:
            raise ValueError(f"body: {exc}") from exc
    try:
        return [(0, loads_bounded(stripped, max_depth=max_depth))], []
    except UnicodeDecodeError as exc:
        raise ValueError(f"body: not UTF-8 JSON ({exc.reason})") from exc
    except JsonTooDeep as exc:
        raise ValueError(f"body: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"body: not JSON ({exc})") from exc


@contextmanager
def sync_run(factory: sessionmaker[Session], source: str) -> Iterator[IngestResult]:
    """Record one collector run in ``sync_runs``, including a failure and its error.

    The body does its own transaction(s); the run row is written afterwards in a separate one
    so that a failed batch still leaves a trace of the failure on Ingest health.
    """
    started = utcnow()
    result = IngestResult()
    try:
        yield result
    except Exception as exc:
        log.exception("%s sync failed", source)
        with session_scope(factory) as session:
            record_sync_run(
                session, source=source, started_at=started, result=result, error=str(exc)
            )
        raise
    with session_scope(factory) as session:
        record_sync_run(session, source=source, started_at=started, result=result)
