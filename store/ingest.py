"""The one write path: idempotent ``INSERT … ON CONFLICT`` upserts, dead letters and sync runs.

Writers take a ``Session`` and never commit: the caller's transaction does, so one batch is one
transaction and a failure leaves nothing half-written.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from store.models import Base, IngestReject, SyncRun

REJECT_PAYLOAD_LIMIT = 16_384
_BINARY_HEAD = 8192
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_ROWS_PER_CALL = 5_000


@dataclass
class UpsertResult:
    """How many rows a batch inserted and how many were already there (or updated in place)."""

    inserted: int = 0
    existing: int = 0

    def __iadd__(self, other: UpsertResult) -> UpsertResult:
        self.inserted += other.inserted
        self.existing += other.existing
        return self


@dataclass
class IngestResult:
    """What a receiver or collector did with one batch; `rejected` items are dead-lettered."""

    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    ignored: int = 0
    reasons: list[str] = field(default_factory=list)
    refused: str | None = None
    """Set when the whole batch was unreadable (dead-lettered whole): the receiver answers 400."""

    def add(self, result: UpsertResult) -> None:
        self.stored += result.inserted
        self.duplicates += result.existing

    def merge(self, other: IngestResult) -> None:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.ignored += other.ignored
        self.reasons.extend(other.reasons)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "ignored": self.ignored,
        }


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def upsert(
    session: Session,
    model: type[Base],
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[str],
    update: Sequence[str] = (),
) -> UpsertResult:
    """Insert ``rows``; on a natural-key conflict do nothing, or update the ``update`` columns.

    Returns how many rows were new. The count comes from ``RETURNING`` (SQLite ≥ 3.35 and
    PostgreSQL), so a retried batch reports ``inserted == 0``. With ``update`` set, rows that
    already existed are updated and counted as existing.
    """
    result = UpsertResult()
    if not rows:
        return result
    table: Table = model.__table__  # type: ignore[assignment]
    dialect = session.get_bind().dialect.name
    ctor: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    if dialect not in ("postgresql", "sqlite"):
        raise ValueError(f"unsupported dialect {dialect!r}: use SQLite or PostgreSQL")
    # Duplicates inside one batch would make PostgreSQL's ON CONFLICT DO UPDATE fail
    # ("cannot affect row a second time"); the last occurrence wins, as a replay would.
    unique: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for row in rows:
        unique[tuple(row[c] for c in conflict)] = row
    batch = list(unique.values())
    result.existing += len(rows) - len(batch)
    # executemany with RETURNING: SQLAlchemy batches it as "insertmanyvalues" and caches the
    # compiled statement, which is far cheaper than one giant VALUES clause per call.
    for start in range(0, len(batch), _ROWS_PER_CALL):
        part = batch[start : start + _ROWS_PER_CALL]
        stmt = ctor(table)
        if update:
            stmt = stmt.on_conflict_do_update(
                index_elements=list(conflict),
                set_={c: stmt.excluded[c] for c in update},
            )
            # Tell new rows from updated ones: PostgreSQL marks fresh rows with xmax = 0;
            # SQLite hands new rows ids above the previous maximum rowid.
            if dialect == "postgresql":
                flags = session.execute(stmt.returning(table.c.id, _pg_inserted_flag()), part).all()
                new = sum(1 for _, inserted in flags if inserted)
            else:
                ceiling = session.scalar(select(func.max(table.c.id))) or 0
                ids = session.execute(stmt.returning(table.c.id), part).scalars().all()
                new = sum(1 for i in ids if i > ceiling)
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))
            new = len(session.execute(stmt.returning(table.c.id), part).all())
        result.inserted += new
        result.existing += len(part) - new
    return result


def _pg_inserted_flag() -> Any:
    from sqlalchemy import literal_column

    return literal_column("(xmax = 0)").label("inserted")


def storable_text(text: str) -> str:
    """``text`` with what PostgreSQL text refuses made visible: NUL as `\\x00`, lone surrogates
    as `\\udXXX` (a dead letter must always be storable, or the reject itself jams the batch)."""
    if not _UNSTORABLE.search(text):
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def _binary_text(payload: bytes) -> str:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if "\x00" not in text:
            return text
    head = payload[:_BINARY_HEAD]
    return f"binary body, {len(payload)} bytes; first {len(head)} as base64: " + (
        base64.b64encode(head).decode()
    )


def bounded_payload(payload: Any, limit: int = REJECT_PAYLOAD_LIMIT) -> tuple[str, bool]:
    """Render ``payload`` as storable text, cut to ``limit`` characters; says whether it was cut.

    Bytes that are not NUL-free UTF-8 (a gzip body) are kept as base64 of their head.
    """
    if isinstance(payload, bytes):
        text = _binary_text(payload)
    elif isinstance(payload, str):
        text = storable_text(payload)
    else:
        try:
            # ASCII JSON escapes NUL and lone surrogates, so the text is always storable.
            text = json.dumps(payload, sort_keys=True, default=str)
        except (TypeError, ValueError, RecursionError):
            text = f"<{type(payload).__name__} that cannot be rendered as JSON>"
    return (text[:limit], True) if len(text) > limit else (text, False)


def record_rejects(
    session: Session,
    *,
    source: str,
    rejects: Iterable[tuple[int | None, str, Any]],
    received_at: datetime | None = None,
) -> int:
    """Dead-letter ``(index, reason, payload)`` items; returns how many items were rejected.

    The same payload refused for the same reason is kept once (a re-sent batch adds no rows).
    """
    at = received_at or utcnow()
    rows = []
    for index, reason, payload in rejects:
        text, truncated = bounded_payload(payload)
        if isinstance(payload, bytes):
            digest = hashlib.sha256(payload).hexdigest()
        else:
            full = bounded_payload(payload, limit=10**9)[0] if truncated else text
            digest = hashlib.sha256(full.encode("utf-8", "replace")).hexdigest()
        rows.append(
            {
                "source": source,
                "received_at": at,
                "item_index": index,
                "reason": storable_text(reason[:2000]),
                "payload": text,
                "payload_truncated": truncated,
                "payload_hash": digest,
            }
        )
    upsert(session, IngestReject, rows, conflict=("source", "payload_hash", "reason"))
    return len(rows)


def record_sync_run(
    session: Session,
    *,
    source: str,
    started_at: datetime,
    result: IngestResult | None,
    error: str | None = None,
    cursor: str | None = None,
    finished_at: datetime | None = None,
) -> SyncRun:
    """Append one collector/receiver run to ``sync_runs``."""
    if error is not None:
        status = "failed"
    elif result is not None and result.rejected:
        status = "partial"
    else:
        status = "ok"
    run = SyncRun(
        source=source,
        started_at=started_at,
        finished_at=finished_at or utcnow(),
        status=status,
        rows_stored=result.stored if result else 0,
        rows_duplicate=result.duplicates if result else 0,
        rows_rejected=result.rejected if result else 0,
        cursor=cursor,
        error=error[:4000] if error else None,
    )
    session.add(run)
    session.flush()
    return run
