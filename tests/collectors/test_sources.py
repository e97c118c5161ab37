"""Route53 snapshots, Prometheus matrices, failover phases, export lines."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from collectors import exports, failover, prometheus, route53
from collectors.base import InvalidItem
from store.metrics import Window
from store.models import DnsWeightObservation, ExportEvent, IngestReject
from store.queries.failover import runs_frame
from store.queries.traffic import weights_frame

T = datetime(2025, 11, 19, 14, tzinfo=UTC)


def _page(*sets):
    return {
        "ResourceRecordSets": [
            {"Name": "api.example.com.", "Type": "A", "SetIdentifier": s, "Weight": w}
            for s, w in sets
        ]
        + [{"Name": "example.com.", "Type": "SOA"}]
    }


def _snapshot(session, at, *sets):
    rows = route53.transform_record_sets(
        _page(*sets), zone_id="Z", names=["api.example.com"], observed_at=at
    )
    return route53.load_record_sets(
        session, rows, zone_id="Z", names=["api.example.com"], observed_at=at
    )


def test_route53_record_that_disappears_is_marked_gone_not_kept(engine):
    with Session(engine) as session, session.begin():
        _snapshot(session, T, ("us-east", 50), ("us-west", 50))
        _snapshot(session, T + timedelta(hours=1), ("us-west", 100))
    with Session(engine) as session:
        df = weights_frame(session, as_of=T + timedelta(hours=2))
        gone = session.scalars(select(DnsWeightObservation).where(DnsWeightObservation.gone)).all()
    assert df[["set_identifier", "weight", "share"]].values.tolist() == [["us-west", 100, 1.0]]
    assert [g.set_identifier for g in gone] == ["us-east"]


def test_prometheus_error_envelope_is_refused_with_its_message():
    error = {
        "status": "error",
        "errorType": "bad_data",
        "error": "exceeded maximum resolution of 11,000 points per timeseries",
    }
    with pytest.raises(InvalidItem, match="bad_data: exceeded maximum resolution"):
        prometheus.transform_traffic({"requests": error})


def test_prometheus_matrices_join_by_timestamp_region_and_ingress_and_skip_nan():
    def matrix(values):
        return {
            "status": "success",
            "data": {
                "resultType": "matrix",
                "result": [{"metric": {"region": "us-east", "ingress": "gw"}, "values": values}],
            },
        }

    rows = prometheus.transform_traffic(
        {
            "requests": matrix([[1763560800, "10"], [1763560815, "NaN"]]),
            "429": matrix([[1763560800, "0.5"]]),
        }
    )
    assert len(rows) == 1
    assert (rows[0]["requests_per_s"], rows[0]["rate_429_per_s"]) == (10.0, 0.5)


@pytest.mark.parametrize(
    ("message", "phase"),
    [
        ("Started cross AZ failover to DB instance: db-2", "started"),
        ("Multi-AZ instance failover started.", "started"),
        ("Completed failover to DB instance: db-2", "promoted"),
        ("Completed RDS initiated failover to DB instance: db-2", "promoted"),
        ("DB instance restarted", None),
    ],
)
def test_rds_failover_messages_are_matched_tolerantly(message, phase):
    assert failover.classify_rds_message(message) == phase


def test_failover_run_rto_and_rpo_from_phases_and_lag(engine):
    with Session(engine) as session, session.begin():
        failover.load_lag_samples(
            session,
            failover.transform_replication_rows(
                [{"application_name": "db-2", "replay_lag": timedelta(seconds=42)}],
                environment="stage",
                observed_at=T - timedelta(minutes=1),
            ),
        )
        key = failover.start_run(session, environment="stage", at=T, kind="drill", source="manual")
        failover.ingest_rds_events(
            session,
            [
                {
                    "Message": "Started cross AZ failover to DB instance: db-2",
                    "EventCategories": ["failover"],
                    "Date": T + timedelta(seconds=30),
                },
                {
                    "Message": "Completed failover to DB instance: db-2",
                    "EventCategories": ["failover"],
                    "Date": T + timedelta(minutes=4),
                },
            ],
            environment="stage",
        )
        failover.mark_phase(
            session,
            run_key=key,
            phase="writable",
            at=T + timedelta(minutes=10),
            source="probe",
            message="write ok",
        )
    with Session(engine) as session:
        runs = runs_frame(session, window=Window(T - timedelta(days=1), T + timedelta(days=1)))
    assert runs["rto_s"].tolist() == [600.0]
    assert runs["rpo_s"].tolist() == [42.0]
    assert runs["promoted_at"].tolist() == [T + timedelta(minutes=4)]


def test_unknown_phase_is_refused(engine):
    with Session(engine) as session, session.begin():
        key = failover.start_run(session, environment="stage", at=T, kind="drill", source="manual")
        with pytest.raises(InvalidItem, match="phase 'done' is not one of"):
            failover.mark_phase(session, run_key=key, phase="done", at=T, source="x", message="")


def test_export_lines_store_valid_events_and_dead_letter_broken_lines(engine):
    text = "\n".join(
        [
            '{"event_id": "e1", "time": "2025-11-12T10:00:00Z", "route": "/exports/1",'
            ' "status": 200, "token": {"present": true, "valid": true},'
            ' "watermark": {"headers": true}}',
            '{"event_id": "e2", "time": "2025-11-12T10:00:01Z", "route": "/exports/2",'
            ' "status": 429}',
            '{"event_id": "e3", "status": "ok"',
        ]
    )
    with Session(engine) as session, session.begin():
        result = exports.ingest_export_lines(session, text, received_at=T)
        exports.ingest_export_lines(session, text, received_at=T)
    with Session(engine) as session:
        events = session.scalars(select(ExportEvent).order_by(ExportEvent.event_id)).all()
        reasons = session.scalars(select(IngestReject.reason)).all()
    assert [(e.event_id, e.token_state, e.watermarked) for e in events] == [
        ("e1", "valid", True),
        ("e2", "missing", False),
    ]
    assert result.rejected == 1
    assert len(reasons) == 1 and reasons[0].startswith("line 3: not JSON")
