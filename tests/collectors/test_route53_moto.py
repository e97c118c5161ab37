"""The Route53 collector on moto's server over real HTTP: weighted sets, health checks, gone
records, and throttling (botocore's Stubber, since moto never throttles)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from sqlalchemy import func, select

from collectors import route53
from store.models import DnsWeightObservation, HealthCheckObservation, SyncRun
from store.queries.traffic import weights_frame
from tests.peers_traffic import boto_client, fixture_moto_endpoint, fixture_moto_url  # noqa: F401

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
RECORD = "api.example.com"


def weighted(region: str, weight: int, health_check: str | None = None) -> dict:
    record: dict = {
        "Name": f"{RECORD}.",
        "Type": "A",
        "SetIdentifier": region,
        "Weight": weight,
        "TTL": 60,
        "ResourceRecords": [{"Value": "192.0.2.10" if region == "us-east" else "192.0.2.20"}],
    }
    if health_check:
        record["HealthCheckId"] = health_check
    return record


def change(client, zone_id: str, action: str, *records: dict) -> None:  # type: ignore[no-untyped-def]
    client.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{"Action": action, "ResourceRecordSet": r} for r in records]},
    )


@pytest.fixture
def zone(moto_endpoint: str):  # type: ignore[no-untyped-def]
    client = boto_client("route53", moto_endpoint)
    zone_id = client.create_hosted_zone(Name="example.com.", CallerReference="qd-test")[
        "HostedZone"
    ]["Id"].split("/")[-1]
    hc = client.create_health_check(
        CallerReference="qd-hc",
        HealthCheckConfig={
            "IPAddress": "192.0.2.10",
            "Port": 443,
            "Type": "HTTPS",
            "ResourcePath": "/healthz",
        },
    )["HealthCheck"]["Id"]
    change(client, zone_id, "CREATE", weighted("us-east", 50, hc), weighted("us-west", 50))
    return client, zone_id, hc


def test_snapshot_stores_weighted_sets_and_health_check_observations(zone, ctx) -> None:
    client, zone_id, hc = zone

    result = route53.sync(ctx.sessions, client, records=[RECORD], observed_at=T0)

    assert result.stored >= 3
    with ctx.sessions() as session:
        sets = session.scalars(select(DnsWeightObservation)).all()
        checks = session.scalars(select(HealthCheckObservation)).all()
    assert {(s.set_identifier, s.weight, s.ttl, s.health_check_id, s.zone_id) for s in sets} == {
        ("us-east", 50, 60, hc, zone_id),
        ("us-west", 50, 60, None, zone_id),
    }
    assert checks and all(c.health_check_id == hc and c.healthy for c in checks)


def test_weight_change_is_a_new_snapshot_and_a_deleted_set_is_marked_gone(zone, ctx) -> None:
    client, zone_id, hc = zone
    route53.sync(ctx.sessions, client, records=[RECORD], observed_at=T0)
    change(client, zone_id, "UPSERT", weighted("us-east", 10, hc), weighted("us-west", 90))
    route53.sync(ctx.sessions, client, records=[RECORD], observed_at=T0 + timedelta(minutes=1))
    change(client, zone_id, "DELETE", weighted("us-east", 10, hc))

    route53.sync(ctx.sessions, client, records=[RECORD], observed_at=T0 + timedelta(minutes=2))

    with ctx.sessions() as session:
        middle = weights_frame(session, as_of=T0 + timedelta(minutes=1))
        latest = weights_frame(session, as_of=T0 + timedelta(minutes=2))
        gone = session.scalars(
            select(DnsWeightObservation).where(DnsWeightObservation.gone.is_(True))
        ).all()
    assert dict(zip(middle["set_identifier"], middle["weight"], strict=True)) == {
        "us-east": 10,
        "us-west": 90,
    }
    assert latest["set_identifier"].tolist() == ["us-west"]
    assert latest["share"].tolist() == [1.0]
    assert [(g.set_identifier, g.observed_at) for g in gone] == [
        ("us-east", T0 + timedelta(minutes=2))
    ]


def test_same_snapshot_twice_adds_no_weight_rows(zone, ctx) -> None:
    client, _zone_id, _hc = zone
    route53.sync(ctx.sessions, client, records=[RECORD], observed_at=T0)
    with ctx.sessions() as session:
        before = session.scalar(select(func.count()).select_from(DnsWeightObservation))

    again = route53.sync(ctx.sessions, client, records=[RECORD], observed_at=T0)

    with ctx.sessions() as session:
        after = session.scalar(select(func.count()).select_from(DnsWeightObservation))
    # moto stamps its canned health-check observation with the current time: only that is new.
    assert after == before and again.duplicates >= 2


def test_throttling_fails_the_run_and_keeps_the_previous_snapshot(zone, ctx) -> None:
    client, _zone_id, _hc = zone
    route53.sync(ctx.sessions, client, records=[RECORD], observed_at=T0)
    stubber = Stubber(client)
    stubber.add_client_error(
        "list_hosted_zones", service_error_code="Throttling", http_status_code=400
    )

    with stubber, pytest.raises(ClientError, match="Throttling"):
        route53.sync(ctx.sessions, client, records=[RECORD], observed_at=T0 + timedelta(minutes=1))

    with ctx.sessions() as session:
        runs = session.scalars(select(SyncRun).order_by(SyncRun.id)).all()
        latest = weights_frame(session, as_of=T0 + timedelta(minutes=5))
    assert [r.status for r in runs] == ["ok", "failed"]
    assert "Throttling" in (runs[-1].error or "")
    assert sorted(latest["set_identifier"]) == ["us-east", "us-west"]


def test_a_record_outside_every_zone_is_a_failed_run_with_the_reason(zone, ctx) -> None:
    client, _zone_id, _hc = zone

    with pytest.raises(ValueError, match="no hosted zone contains"):
        route53.sync(ctx.sessions, client, records=["api.other.org"], observed_at=T0)

    with ctx.sessions() as session:
        run = session.scalars(select(SyncRun)).one()
    assert run.status == "failed" and "api.other.org" in (run.error or "")


def test_most_specific_zone_wins() -> None:
    zones = [
        {"Id": "/hostedzone/ZROOT", "Name": "example.com."},
        {"Id": "/hostedzone/ZSUB", "Name": "eu.example.com."},
    ]

    assert route53.zone_for("api.eu.example.com", zones) == "ZSUB"
    assert route53.zone_for("api.example.com.", zones) == "ZROOT"
    assert route53.zone_for("example.org", zones) is None
