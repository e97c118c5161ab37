"""Demo policy traffic that goes through the receiver's own decoding: gzip chunks as OPA uploads
them, decoded by `collectors.opa.decode_chunk` and stored by `ingest_decisions`.

The chunks hold what a security reviewer should find on the Policy page: an input carrying a
`<script>` (shown escaped), a masked field, and one malformed event that is dead-lettered.
Deterministic (fixed ids and times) and idempotent (a re-run stores nothing new).
"""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from collectors import opa
from store.ingest import IngestResult

_NAMESPACE = uuid.UUID("6f0c3a52-6c1e-4c55-9d0e-8f3f2f7b9a10")
_START = datetime(2025, 11, 19, 14, 0, tzinfo=UTC)
_LIMIT = 8 * 1024 * 1024


def _rfc3339(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def _event(n: int, **over: Any) -> dict[str, Any]:
    at = _START + timedelta(minutes=7 * n)
    body: dict[str, Any] = {
        "decision_id": str(uuid.uuid5(_NAMESPACE, f"demo-policy-{n}")),
        "labels": {"id": "prod-opa-1", "version": "1.4.2", "environment": "prod"},
        "bundles": {"authz": {"revision": "2025.11.12-r42"}},
        "path": "/acme/exports/allow",
        "input": {
            "user": {"name": "eve", "roles": ["viewer"]},
            "method": "POST",
            "resource": "exports",
            "note": "quarterly report",
        },
        "result": {"allow": False, "reason": "viewer cannot export"},
        "erased": ["/input/user/token"],
        "masked": ["/input/note"],
        "requested_by": "10.0.4.17:51234",
        "metrics": {"timer_rego_query_eval_ns": 48_000 + n},
        "timestamp": _rfc3339(at),
    }
    body.update(over)
    return body


def chunks() -> list[tuple[datetime, bytes]]:
    """Two gzip chunks (upload time, body) in OPA's decision_logs wire format."""
    first = [_event(n) for n in range(4)]
    first[2]["input"]["note"] = '<script>alert("xss")</script> please export'
    second = [_event(n) for n in range(4, 8)]
    second[1] = {"labels": {"id": "prod-opa-1"}, "path": "acme/exports/allow", "timestamp": 0}
    return [
        (_START + timedelta(minutes=22, seconds=3), gzip.compress(json.dumps(first).encode())),
        (_START + timedelta(minutes=57, seconds=2), gzip.compress(json.dumps(second).encode())),
    ]


def feed(session: Session) -> dict[str, IngestResult]:
    """Decode and store the demo chunks exactly as `POST /ingest/opa/logs` does."""
    total = IngestResult()
    for received_at, body in chunks():
        events = opa.decode_chunk(body, content_encoding="gzip", limit=_LIMIT)
        total.merge(opa.ingest_decisions(session, events, received_at=received_at))
    return {opa.SOURCE_LOGS: total}
