"""The action audit's hash chain: append a row (hash of the previous one included), verify it.

Each row's hash covers its own fields and the previous row's hash, so changing, deleting or
reordering any row breaks every hash from there on; `verify_chain` names the first row that no
longer matches. The unique `seq` settles two writers racing to append: the loser retries on top
of the winner's row instead of forking the chain.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store.models import ActionAudit

GENESIS_HASH = "0" * 64
_APPEND_ATTEMPTS = 8


def _canonical_at(at: datetime) -> str:
    # Microseconds are kept by both dialects; the zone is normalised so a re-read row hashes alike.
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_digest(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    environment: str | None,
    outcome: str,
    detail: dict[str, Any],
    prev_hash: str,
) -> str:
    """Return the SHA-256 of a row's fields in canonical JSON (sorted keys, no spaces)."""
    body = {
        "seq": seq,
        "at": _canonical_at(at),
        "actor": actor,
        "action": action,
        "target": target,
        "environment": environment,
        "outcome": outcome,
        "detail": detail,
        "prev_hash": prev_hash,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def append_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    environment: str | None,
    outcome: str,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> ActionAudit:
    """Append one row on top of the chain's last row and flush it (the caller commits)."""
    when = at or datetime.now(UTC)
    # A JSON round trip makes the stored detail and the hashed detail the same value.
    clean = json.loads(json.dumps(detail or {}, sort_keys=True, default=str))
    for _ in range(_APPEND_ATTEMPTS):
        last = session.execute(
            select(ActionAudit.seq, ActionAudit.row_hash).order_by(ActionAudit.seq.desc()).limit(1)
        ).first()
        seq = (last.seq + 1) if last else 1
        prev = last.row_hash if last else GENESIS_HASH
        row = ActionAudit(
            seq=seq,
            at=when,
            actor=actor,
            action=action,
            target=target,
            environment=environment,
            outcome=outcome,
            detail=clean,
            prev_hash=prev,
            row_hash=row_digest(
                seq=seq,
                at=when,
                actor=actor,
                action=action,
                target=target,
                environment=environment,
                outcome=outcome,
                detail=clean,
                prev_hash=prev,
            ),
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            continue  # another writer took this seq; chain on top of theirs
        return row
    raise RuntimeError(f"could not append to the audit chain after {_APPEND_ATTEMPTS} attempts")


@dataclass(frozen=True)
class ChainVerdict:
    """The result of walking the chain: ok, rows checked, and the first bad row with why."""

    ok: bool
    rows: int
    first_bad_seq: int | None = None
    problem: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
        }


def verify_chain(session: Session, *, batch: int = 1000) -> ChainVerdict:
    """Walk the audit in `seq` order and return the first row whose link or hash is wrong."""
    prev = GENESIS_HASH
    expected_seq = 1
    checked = 0
    after = 0
    while True:
        rows = (
            session.execute(
                select(ActionAudit)
                .where(ActionAudit.seq > after)
                .order_by(ActionAudit.seq)
                .limit(batch)
            )
            .scalars()
            .all()
        )
        if not rows:
            return ChainVerdict(ok=True, rows=checked)
        for row in rows:
            if row.seq != expected_seq:
                return ChainVerdict(
                    False,
                    checked,
                    expected_seq,
                    f"row {expected_seq} is missing (next is {row.seq})",
                )
            if row.prev_hash != prev:
                return ChainVerdict(
                    False, checked, row.seq, f"row {row.seq} does not link to row {row.seq - 1}"
                )
            digest = row_digest(
                seq=row.seq,
                at=row.at,
                actor=row.actor,
                action=row.action,
                target=row.target,
                environment=row.environment,
                outcome=row.outcome,
                detail=row.detail,
                prev_hash=row.prev_hash,
            )
            if digest != row.row_hash:
                return ChainVerdict(
                    False, checked, row.seq, f"row {row.seq} was modified (hash does not match)"
                )
            prev = row.row_hash
            expected_seq += 1
            checked += 1
            after = row.seq


def audit_count(session: Session) -> int:
    """Return how many audit rows exist."""
    return int(session.scalar(select(func.count()).select_from(ActionAudit)) or 0)
