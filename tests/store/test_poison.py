"""Poison-proof ingest, on SQLite AND PostgreSQL: per item, what the store cannot hold is
dead-lettered with its reason, the rest of the batch is stored, and a resend adds nothing.

The poison kinds are the ones that jammed real feeds: nesting past the parser's depth (a
`RecursionError` before), a NUL character (PostgreSQL text/JSONB refuses `\\u0000`: 503 on every
retry), a lone surrogate (`"\\ud800"`: no UTF-8 encoder takes it), NaN (JSONB refuses it) and an
oversize item. The chunks are bytes as a sender puts them on the wire (OPA: gzip).
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from collectors import ci_ingest, exports, incidents, opa
from collectors.base import MAX_ITEM_CHARS, MAX_JSON_DEPTH
from store.ingest import IngestResult
from store.models import CiJobMetric, ExportEvent, Incident, IngestReject, OpaDecision, SyncRun
from store.models.ci import GitHubDelivery

RECEIVED = datetime(2026, 12, 1, 16, 5, tzinfo=UTC)
LIMIT = 64 * 1024 * 1024
DEEP = 1000  # ≥ the interpreter's recursion limit: json.loads alone raises RecursionError


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def decision(decision_id: str, *, input_json: str = '{"user":"ana"}', result: str = "true") -> str:
    return (
        '{"labels":{"id":"opa-1","version":"1.9.0","env":"stage"},'
        f'"decision_id":"{decision_id}","bundles":{{"acme":{{"revision":"r1"}}}},'
        f'"path":"acme/authz/allow","input":{input_json},"result":{result},'
        '"timestamp":"2026-12-01T16:01:12.963679134Z"}'
    )


# Written as JSON text, escapes included, exactly as a sender's encoder would write them.
POISON = {
    "deep": decision("p-deep", input_json=nested(DEEP)),
    "nul": decision("p-nul", input_json='{"user":"an\\u0000a"}'),
    "surrogate": decision("p-surrogate", result='{"allow":true,"why":"\\ud800"}'),
    "nan": decision("p-nan", result='{"allow":true,"score":NaN}'),
    "oversize": decision("p-big", input_json='{"blob":"' + "x" * (MAX_ITEM_CHARS + 1) + '"}'),
}
REASONS = {
    "deep": f"nested deeper than {MAX_JSON_DEPTH} levels",
    "nul": "input: contains a NUL character",
    "surrogate": "result: contains a lone surrogate (\\ud800)",
    "nan": "result: contains NaN or Infinity",
    "oversize": f"over the {MAX_ITEM_CHARS} limit per item",
}
VALID = ["ok-1", "ok-2", "ok-3"]


def chunk() -> bytes:
    items = [decision(VALID[0]), *POISON.values(), decision(VALID[1]), decision(VALID[2])]
    return gzip.compress(("[" + ",".join(items) + "]").encode(), mtime=0)


def count(engine: Engine, model: Any) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def reasons(engine: Engine, source: str) -> list[str]:
    with Session(engine) as session:
        return list(
            session.scalars(
                select(IngestReject.reason)
                .where(IngestReject.source == source)
                .order_by(IngestReject.item_index)
            )
        )


def receive_opa(engine: Engine, body: bytes) -> IngestResult:
    with Session(engine) as session, session.begin():
        return opa.receive_decision_log(
            session, body, content_encoding="gzip", received_at=RECEIVED, limit=LIMIT
        )


def test_opa_chunk_with_every_poison_kind_stores_the_valid_events_and_resends_add_nothing(
    engine: Engine,
) -> None:
    body = chunk()

    first = receive_opa(engine, body)
    again = receive_opa(engine, body)

    assert first.refused is None
    assert (first.stored, first.rejected) == (len(VALID), len(POISON))
    with Session(engine) as session:
        stored = session.scalars(select(OpaDecision.decision_id).order_by(OpaDecision.decision_id))
        assert list(stored) == VALID
    dead = reasons(engine, opa.SOURCE_LOGS)
    assert len(dead) == len(POISON)
    for (kind, expected), reason in zip(REASONS.items(), dead, strict=True):
        assert expected in reason, (kind, reason)
    # The resend (OPA's retry): nothing new, neither decisions nor dead letters.
    assert (again.stored, again.duplicates, again.rejected) == (0, len(VALID), len(POISON))
    assert count(engine, OpaDecision) == len(VALID)
    assert count(engine, IngestReject) == len(POISON)
    with Session(engine) as session:
        runs = session.scalars(select(SyncRun.status).where(SyncRun.source == opa.SOURCE_LOGS))
        assert list(runs) == ["partial", "partial"]


def test_opa_chunk_of_only_poison_is_still_accepted(engine: Engine) -> None:
    body = gzip.compress(("[" + ",".join(POISON.values()) + "]").encode())

    result = receive_opa(engine, body)

    assert (result.refused, result.stored, result.rejected) == (None, 0, len(POISON))


def test_a_body_that_is_deep_outside_any_event_is_refused_and_dead_lettered(
    engine: Engine,
) -> None:
    body = gzip.compress(b"[" * 100_000 + b"]" * 100_000)

    result = receive_opa(engine, body)

    assert result.refused is not None and "nested deeper than" in result.refused
    assert count(engine, IngestReject) == 1


def _report(job: str, **extra: Any) -> dict[str, Any]:
    return {
        "repo": "acme/web",
        "run_id": 7,
        "job": job,
        "duration_s": 12.5,
        "finished_at": "2026-12-01T10:00:00Z",
        **extra,
    }


def test_ci_reports_poison_is_dead_lettered_and_the_rest_stored(engine: Engine) -> None:
    items = [
        json.dumps(_report("build")),
        json.dumps(_report("lint", owner="an\x00a")),
        json.dumps(_report("unit")).replace('"unit"', '"unit\\ud800"'),
        '{"job":' + nested(DEEP) + "}",
        json.dumps(_report("e2e")),
    ]
    body = ("[" + ",".join(items) + "]").encode()

    def receive() -> IngestResult:
        with Session(engine) as session, session.begin():
            return ci_ingest.receive_job_reports(
                session, body, content_type="application/json", params={}, received_at=RECEIVED
            )

    first, again = receive(), receive()

    assert (first.refused, first.stored, first.rejected) == (None, 2, 3)
    assert [r.split(":")[0] for r in first.reasons] == ["[3] item", "[1] owner", "[2] job"]
    assert (again.stored, again.duplicates) == (0, 2)
    assert count(engine, CiJobMetric) == 2
    assert count(engine, IngestReject) == 3


def _line(event_id: str, user: str = "ana") -> str:
    return json.dumps(
        {
            "event_id": event_id,
            "time": "2026-12-01T10:00:00Z",
            "route": f"/exports/{event_id}",
            "status": 200,
            "user": user,
        }
    )


def test_export_lines_poison_is_dead_lettered_and_the_rest_stored(engine: Engine) -> None:
    lines = [
        _line("e1"),
        _line("e2", user="an\x00a"),
        _line("e3").replace("e3", "e3\\udfff"),
        _line("e4"),
    ]
    body = "\n".join(lines).encode()

    def receive() -> IngestResult:
        with Session(engine) as session, session.begin():
            return exports.receive_export_lines(session, body, received_at=RECEIVED)

    first, again = receive(), receive()

    assert (first.refused, first.stored, first.rejected) == (None, 2, 2)
    assert first.reasons[0].startswith("line 2: user: contains a NUL character")
    assert first.reasons[1].startswith("line 3: ")
    assert "lone surrogate" in first.reasons[1]
    assert (again.stored, again.duplicates) == (0, 2)
    assert count(engine, ExportEvent) == 2
    assert count(engine, IngestReject) == 2


def test_incidents_poison_is_dead_lettered_and_the_rest_stored(engine: Engine) -> None:
    good = {"key": "inc-1", "title": "Web 5xx", "started_at": "2026-12-01T10:00:00Z"}
    body = json.dumps(
        [good, {**good, "key": "inc-2", "summary": "a\x00b"}, {**good, "key": "inc-3"}]
    ).encode()

    def receive() -> IngestResult:
        with Session(engine) as session, session.begin():
            return incidents.receive_incidents(session, body, received_at=RECEIVED)

    first, again = receive(), receive()

    assert (first.refused, first.stored, first.rejected) == (None, 2, 1)
    assert first.reasons == [
        "item 2: summary: contains a NUL character (\\u0000), which PostgreSQL cannot store"
    ]
    assert (again.stored, again.duplicates) == (0, 2)
    assert count(engine, Incident) == 2
    assert count(engine, IngestReject) == 1


@pytest.mark.parametrize("poison", ["an\\u0000a", "an\\ud800a"], ids=["nul", "surrogate"])
def test_github_delivery_the_store_cannot_hold_is_dead_lettered_once(
    engine: Engine, poison: str
) -> None:
    body = (
        '{"action":"opened","number":7,"repository":{"full_name":"acme/web"},'
        f'"pull_request":{{"number":7,"title":"{poison}"}}}}'
    ).encode()

    def receive() -> IngestResult:
        with Session(engine) as session, session.begin():
            return ci_ingest.receive_github_delivery(
                session,
                body,
                content_type="application/json",
                event="pull_request",
                delivery_id="d-1",
                received_at=RECEIVED,
            )

    first, again = receive(), receive()

    assert (first.refused, first.rejected) == (None, 1)
    assert "pull_request: payload: " not in first.reasons[0]
    assert first.reasons[0].startswith("pull_request: pull_request: contains a")
    assert again.duplicates == 1  # the redelivery adds nothing
    assert count(engine, IngestReject) == 1
    with Session(engine) as session:
        assert list(session.scalars(select(GitHubDelivery.outcome))) == ["rejected"]
