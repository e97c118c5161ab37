from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collectors.opa import ingest_decisions, ingest_status
from store.models import IngestReject, OpaDecision, OpaStatusReport

RECEIVED = datetime(2025, 11, 12, 10, 0, 30, tzinfo=UTC)


def event(decision_id: str, **over):
    base = {
        "decision_id": decision_id,
        "labels": {"id": "prod-opa-1", "version": "1.4.2", "environment": "prod"},
        "bundles": {"authz": {"revision": "r42"}},
        "path": "/acme/authz/allow",
        "input": {"user": "ana"},
        "result": {"allow": False},
        "erased": ["/input/token"],
        "timestamp": "2025-11-12T10:00:00.123456789Z",
    }
    base.update(over)
    return base


def test_mixed_chunk_stores_valid_events_and_dead_letters_the_rest(engine):
    chunk = [
        event("d1"),
        {"labels": {"id": "x"}, "path": "p", "timestamp": "2025-11-12T10:00:00Z"},
        event("d2", timestamp="yesterday"),
        event("d3", result=True),
    ]
    with Session(engine) as session, session.begin():
        result = ingest_decisions(session, chunk, received_at=RECEIVED)
    with Session(engine) as session:
        stored = session.scalars(select(OpaDecision).order_by(OpaDecision.decision_id)).all()
        rejects = session.scalars(select(IngestReject).order_by(IngestReject.item_index)).all()
        assert [d.decision_id for d in stored] == ["d1", "d3"]
        assert stored[0].path == "acme/authz/allow"  # leading slash tolerated
        assert stored[0].allowed is False and stored[1].allowed is True
        assert stored[0].bundles == {"authz": "r42"}
        assert (stored[0].received_at - stored[0].timestamp).total_seconds() > 29
        assert [(r.item_index, r.reason) for r in rejects] == [
            (1, "decision_id: missing"),
            (2, "timestamp: 'yesterday' is not an RFC 3339 timestamp"),
        ]
    assert (result.stored, result.rejected) == (2, 2)


def test_resent_chunk_adds_no_decisions(engine):
    chunk = [event("d1"), event("d2")]
    with Session(engine) as session, session.begin():
        ingest_decisions(session, chunk, received_at=RECEIVED)
    with Session(engine) as session, session.begin():
        again = ingest_decisions(session, chunk, received_at=RECEIVED)
        assert session.scalar(select(func.count()).select_from(OpaDecision)) == 2
    assert (again.stored, again.duplicates) == (0, 2)


def test_body_that_is_not_an_array_is_dead_lettered_whole(engine):
    with Session(engine) as session, session.begin():
        result = ingest_decisions(session, {"decision_id": "d1"}, received_at=RECEIVED)
    assert result.rejected == 1
    assert result.reasons == ["body: expected a JSON array of decision events"]


def test_status_report_keeps_history_per_instance_and_bundle(engine):
    body = {
        "labels": {"id": "stage-opa-1", "environment": "stage"},
        "bundles": {"authz": {"name": "authz", "active_revision": "r41"}},
    }
    later = {
        "labels": {"id": "stage-opa-1", "environment": "stage"},
        "bundles": {
            "authz": {
                "name": "authz",
                "active_revision": "r42",
                "code": "bundle_error",
                "message": "boom",
            }
        },
    }
    with Session(engine) as session, session.begin():
        ingest_status(session, body, received_at=RECEIVED)
        ingest_status(session, later, received_at=RECEIVED.replace(minute=5))
    with Session(engine) as session:
        rows = session.scalars(select(OpaStatusReport).order_by(OpaStatusReport.reported_at)).all()
    assert [(r.active_revision, r.code) for r in rows] == [("r41", None), ("r42", "bundle_error")]


def test_decoding_never_raises_recursion_error_and_isolates_a_deep_event():
    import gzip

    import pytest

    from collectors.opa import BadPayload, decode_chunk, decode_events

    deep_body = gzip.compress(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(BadPayload, match="nested deeper than"):
        decode_chunk(deep_body, content_encoding="gzip", limit=10**7)
    with pytest.raises(BadPayload, match="nested deeper than"):
        decode_events(deep_body, content_encoding="gzip", limit=10**7)

    deep_event = '{"decision_id":"deep","input":' + '{"a":' * 5000 + "1" + "}" * 5000 + "}"
    chunk = gzip.compress(f'[{{"decision_id":"ok"}},{deep_event}]'.encode())
    events, rejects = decode_events(chunk, content_encoding="gzip", limit=10**7)
    assert events == [(0, {"decision_id": "ok"})]
    assert [(i, r) for i, r, _ in rejects] == [(1, "item: JSON nested deeper than 200 levels")]
