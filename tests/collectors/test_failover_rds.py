"""RDS events through moto's server (paginated DescribeEvents) and the failover phase rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from sqlalchemy import select

from collectors import failover
from store.models import FailoverRun, SyncRun
from store.queries.failover import get_run
from tests.peers_traffic import boto_client


def test_describe_events_from_moto_are_read_and_non_failover_events_ignored(
    moto_endpoint: str, ctx
) -> None:
    rds = boto_client("rds", moto_endpoint)
    rds.create_db_instance(
        DBInstanceIdentifier="stage-db-1",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="qd",
        MasterUserPassword="not-a-secret-1",
        AllocatedStorage=20,
    )
    now = datetime.now(UTC) + timedelta(minutes=1)

    events = failover.fetch_rds_events(rds, start=now - timedelta(hours=1), end=now)
    result = failover.sync_rds(ctx.sessions, rds, environment="stage", now=now)

    assert events and all("Message" in e for e in events)
    assert result.ignored == len(events) and result.stored == 0
    with ctx.sessions() as session:
        assert session.scalars(select(FailoverRun)).all() == []
        run = session.scalars(select(SyncRun)).one()
    assert run.status == "ok" and run.cursor == now.isoformat()


def test_throttled_describe_events_keeps_the_cursor(moto_endpoint: str, ctx) -> None:
    rds = boto_client("rds", moto_endpoint)
    first = datetime.now(UTC)
    failover.sync_rds(ctx.sessions, rds, environment="stage", now=first)
    stubber = Stubber(rds)
    stubber.add_client_error(
        "describe_events", service_error_code="ThrottlingException", http_status_code=400
    )

    with stubber, pytest.raises(ClientError, match="Throttling"):
        failover.sync_rds(ctx.sessions, rds, environment="stage", now=first + timedelta(minutes=1))

    with ctx.sessions() as session:
        runs = session.scalars(select(SyncRun).order_by(SyncRun.id)).all()
    assert [r.status for r in runs] == ["ok", "failed"]
    assert runs[-1].cursor == first.isoformat()


def test_aurora_failover_events_open_a_run_with_promotion_and_traffic_shift(ctx) -> None:
    t = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    events = [
        {
            "SourceIdentifier": "stage-db",
            "SourceType": "db-cluster",
            "Message": "Started cross AZ failover to DB instance: stage-db-2",
            "EventCategories": ["failover"],
            "Date": t,
        },
        {
            "SourceIdentifier": "stage-db",
            "SourceType": "db-cluster",
            "Message": "Completed RDS initiated failover to DB instance: stage-db-2",
            "EventCategories": ["failover"],
            "Date": t + timedelta(seconds=35),
        },
    ]
    with ctx.session() as session:
        result = failover.ingest_rds_events(session, events, environment="stage")
        again = failover.ingest_rds_events(session, events, environment="stage")
    with ctx.session() as session:
        detail = get_run(session, "stage-failover-20260302T120000Z", now=t + timedelta(hours=1))

    assert result.stored >= 1 and again.stored == 0
    assert detail is not None
    assert detail.phases["promoted"] == t + timedelta(seconds=35)
    assert detail.rto_s is None  # promotion alone is not a first write
