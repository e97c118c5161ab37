from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collectors.opa import DecisionOptions, ingest_decisions, ingest_status
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


def test_decisions_are_keyed_on_the_identity_label_like_status_reports(engine):
    """OPA replaces `labels.id` on every start: the configured identity label names the OPA,
    `labels.id` only when the label is absent (the same rule as for status reports)."""
    labelled = {"id": "uuid-1", "instance": "opa-prod-1", "pod": "opa-7f9c", "version": "1.9.0"}
    chunk = [
        event("d1", labels=labelled),
        event("d2", labels=labelled | {"id": "uuid-2"}),  # the same OPA after a restart
        event("d3", labels={"id": "uuid-3"}),  # no identity label
        event("d4", labels={"instance": "opa-prod-2"}),  # no labels.id: the label suffices
        event("d5", labels={"instance": " "}),  # a blank label is no identity
    ]
    with Session(engine) as session, session.begin():
        result = ingest_decisions(session, chunk, received_at=RECEIVED)
        custom = ingest_decisions(
            session,
            [event("d6", labels=labelled)],
            received_at=RECEIVED,
            options=DecisionOptions(instance_label="pod"),
        )
        status = ingest_status(
            session,
            {"labels": labelled, "bundles": {"authz": {"active_revision": "r42"}}},
            received_at=RECEIVED,
        )
    with Session(engine) as session:
        stored = dict(
            session.execute(select(OpaDecision.decision_id, OpaDecision.instance_id)).all()
        )
        reasons = [r.reason for r in session.scalars(select(IngestReject))]
        reported = session.scalar(select(OpaStatusReport.instance_id))
    assert stored == {
        "d1": "opa-prod-1",
        "d2": "opa-prod-1",
        "d3": "uuid-3",
        "d4": "opa-prod-2",
        "d6": "opa-7f9c",
    }
    assert reported == stored["d1"]  # decisions and status name the OPA alike
    assert reasons == ["labels.id: missing"]
    assert (result.stored, result.rejected, custom.stored, status.stored) == (4, 1, 1, 1)


def test_nd_builtin_cache_is_stored_as_opa_sent_it(engine):
    cache = {"time.now_ns": {"[]": 1796140946290275134}, "rand.intn": {'["a",10]': 3}}
    chunk = [
        event("d1", nd_builtin_cache=cache),
        event("d2", nd_builtin_cache={}),  # `nd_builtin_cache: true`, no builtin called
        event("d3"),  # the option off: OPA sends no key
        event("d4", nd_builtin_cache=[1]),
    ]
    with Session(engine) as session, session.begin():
        result = ingest_decisions(session, chunk, received_at=RECEIVED)
    with Session(engine) as session:
        stored = dict(
            session.execute(select(OpaDecision.decision_id, OpaDecision.nd_builtin_cache)).all()
        )
        [reject] = session.scalars(select(IngestReject))
    assert stored == {"d1": cache, "d2": {}, "d3": None}
    assert stored["d1"]["time.now_ns"]["[]"] == 1796140946290275134  # no float rounding
    assert (reject.item_index, reject.reason) == (
        3,
        "nd_builtin_cache: expected an object of {builtin: {args: value}}",
    )
    assert (result.stored, result.rejected) == (3, 1)
