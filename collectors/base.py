"""Shared plumbing for every source: parsing helpers, rejects and the `run_sync` bookkeeping.

Each source module follows `fetch_* → transform_* → load_*`; `transform_*` functions are pure
and raise :class:`InvalidItem` with a reason a person can act on.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from store.db import session_scope
from store.ingest import IngestResult, record_sync_run, utcnow

log = logging.getLogger(__name__)

_FRACTION = re.compile(r"(\.\d{1,6})\d*")


class InvalidItem(ValueError):
    """One item of a batch cannot be stored; the message is the reason shown on Ingest health."""


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
