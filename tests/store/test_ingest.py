from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.ingest import record_rejects, upsert
from store.models import IngestReject, TrafficSample

T0 = datetime(2025, 11, 12, 10, 0, tzinfo=UTC)


def _samples(n: int, rps: float = 10.0) -> list[dict]:
    return [
        {
            "ts": T0 + timedelta(seconds=15 * i),
            "region": "us-east",
            "ingress": "gw",
            "requests_per_s": rps,
            "rate_429_per_s": 0.0,
            "rate_5xx_per_s": 0.0,
            "rate_503_per_s": 0.0,
            "cache_hit_ratio": None,
        }
        for i in range(n)
    ]


def _count(session: Session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def test_retry_of_same_batch_adds_no_rows(engine):
    with Session(engine) as session, session.begin():
        first = upsert(session, TrafficSample, _samples(7), conflict=("ts", "region", "ingress"))
    with Session(engine) as session, session.begin():
        again = upsert(session, TrafficSample, _samples(7), conflict=("ts", "region", "ingress"))
        assert _count(session, TrafficSample) == 7
    assert (first.inserted, first.existing) == (7, 0)
    assert (again.inserted, again.existing) == (0, 7)


def test_upsert_with_update_refreshes_values_and_counts_only_new_rows(engine):
    key = ("ts", "region", "ingress")
    with Session(engine) as session, session.begin():
        upsert(session, TrafficSample, _samples(3), conflict=key)
    with Session(engine) as session, session.begin():
        result = upsert(
            session, TrafficSample, _samples(5, rps=99.0), conflict=key, update=("requests_per_s",)
        )
        values = session.scalars(select(TrafficSample.requests_per_s)).all()
    assert (result.inserted, result.existing) == (2, 3)
    assert values == [99.0] * 5


def test_duplicates_inside_one_batch_are_stored_once(engine):
    rows = _samples(2) + _samples(2)
    with Session(engine) as session, session.begin():
        result = upsert(
            session,
            TrafficSample,
            rows,
            conflict=("ts", "region", "ingress"),
            update=("requests_per_s",),
        )
        assert _count(session, TrafficSample) == 2
    assert result.inserted == 2


def test_large_batch_spanning_several_statements_is_stored_whole(engine):
    with Session(engine) as session, session.begin():
        result = upsert(
            session, TrafficSample, _samples(12_001), conflict=("ts", "region", "ingress")
        )
        assert _count(session, TrafficSample) == 12_001
    assert result.inserted == 12_001


def test_timestamps_come_back_timezone_aware_utc(engine):
    cet = timezone(timedelta(hours=1))
    row = _samples(1)[0] | {"ts": datetime(2025, 11, 12, 11, 0, tzinfo=cet)}
    with Session(engine) as session, session.begin():
        upsert(session, TrafficSample, [row], conflict=("ts", "region", "ingress"))
    with Session(engine) as session:
        ts = session.scalar(select(TrafficSample.ts))
    assert ts == T0
    assert ts.utcoffset() == timedelta(0)


def test_naive_timestamp_is_refused():
    from store.types import UTCDateTime

    with pytest.raises(ValueError, match="timezone-aware"):
        UTCDateTime().process_bind_param(datetime(2025, 1, 1), None)  # type: ignore[arg-type]


def test_same_reject_resent_is_kept_once_and_payload_is_bounded(engine):
    big = {"blob": "x" * 50_000}
    with Session(engine) as session, session.begin():
        record_rejects(session, source="opa.logs", rejects=[(0, "decision_id: missing", big)])
    with Session(engine) as session, session.begin():
        record_rejects(session, source="opa.logs", rejects=[(0, "decision_id: missing", big)])
    with Session(engine) as session:
        rows = session.scalars(select(IngestReject)).all()
    assert len(rows) == 1
    assert rows[0].payload_truncated is True
    assert len(rows[0].payload) == 16_384
    assert rows[0].reason == "decision_id: missing"
