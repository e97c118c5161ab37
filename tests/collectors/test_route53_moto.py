"""The Route53 collector on moto's server over real HTTP: weighted sets, health checks, gone
records, paginated reads, the shared zone-lookup rule, and throttling (answered by a botocore
`before-send` hook shaped as Route 53's throttling error, since moto never throttles)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from collectors import route53 as collector
from console.context import AppContext
from providers.route53 import HostedZone, Route53, Route53Error, ZoneLookupError, pick_zone
from store.models import DnsWeightObservation, HealthCheckObservation, SyncRun
from store.queries.traffic import weights_frame
from tests.peers_actions import count_calls, route53_client, throttle

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
RECORD = "api.example.com"


def weighted(region: str, weight: int, health_check: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {
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


def change(client: Any, zone_id: str, action: str, *records: dict[str, Any]) -> None:
    client.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{"Action": action, "ResourceRecordSet": r} for r in records]},
    )


@pytest.fixture
def zone(route53: Any) -> tuple[Any, str, str]:
    client = route53
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


def test_snapshot_stores_weighted_sets_and_health_check_observations(
    zone: tuple[Any, str, str], ctx: AppContext
) -> None:
    client, zone_id, hc = zone

    result = collector.sync(ctx.sessions, Route53(client), records=[RECORD], observed_at=T0)

    assert result.stored >= 3
    with ctx.sessions() as session:
        sets = session.scalars(select(DnsWeightObservation)).all()
        checks = session.scalars(select(HealthCheckObservation)).all()
    assert {(s.set_identifier, s.weight, s.ttl, s.health_check_id, s.zone_id) for s in sets} == {
        ("us-east", 50, 60, hc, zone_id),
        ("us-west", 50, 60, None, zone_id),
    }
    assert checks and all(c.health_check_id == hc and c.healthy for c in checks)


def test_weight_change_is_a_new_snapshot_and_a_deleted_set_is_marked_gone(
    zone: tuple[Any, str, str], ctx: AppContext
) -> None:
    client, zone_id, hc = zone
    r53 = Route53(client)
    collector.sync(ctx.sessions, r53, records=[RECORD], observed_at=T0)
    change(client, zone_id, "UPSERT", weighted("us-east", 10, hc), weighted("us-west", 90))
    collector.sync(ctx.sessions, r53, records=[RECORD], observed_at=T0 + timedelta(minutes=1))
    change(client, zone_id, "DELETE", weighted("us-east", 10, hc))

    collector.sync(ctx.sessions, r53, records=[RECORD], observed_at=T0 + timedelta(minutes=2))

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


def test_same_snapshot_twice_adds_no_weight_rows(
    zone: tuple[Any, str, str], ctx: AppContext
) -> None:
    client, _zone_id, _hc = zone
    collector.sync(ctx.sessions, Route53(client), records=[RECORD], observed_at=T0)
    with ctx.sessions() as session:
        before = session.scalar(select(func.count()).select_from(DnsWeightObservation))

    again = collector.sync(ctx.sessions, Route53(client), records=[RECORD], observed_at=T0)

    with ctx.sessions() as session:
        after = session.scalar(select(func.count()).select_from(DnsWeightObservation))
    # moto stamps its canned health-check observation with the current time: only that is new.
    assert after == before and again.duplicates >= 2


def test_more_than_one_page_of_record_sets_is_read_fully(route53: Any, ctx: AppContext) -> None:
    zone_id = route53.create_hosted_zone(Name="example.com.", CallerReference="qd-pages")[
        "HostedZone"
    ]["Id"]
    values = {
        "A": lambda i: f"192.0.2.{i}",
        "AAAA": lambda i: f"2001:db8::{i:x}",
        "TXT": lambda i: f'"set {i}"',
    }
    # 150 weighted sets of one name (50 per type) between 120 names before it and one after:
    # with 50 per page, moto's pages end where the type changes (moto ignores
    # StartRecordIdentifier, so a page may not end inside one name+type there).
    changes = [
        {
            "Action": "CREATE",
            "ResourceRecordSet": {
                "Name": f"{RECORD}.",
                "Type": rtype,
                "SetIdentifier": f"r{i:03d}",
                "Weight": i,
                "TTL": 60,
                "ResourceRecords": [{"Value": value(i)}],
            },
        }
        for rtype, value in values.items()
        for i in range(50)
    ] + [
        {
            "Action": "CREATE",
            "ResourceRecordSet": {
                "Name": name,
                "Type": "A",
                "TTL": 300,
                "ResourceRecords": [{"Value": "198.51.100.1"}],
            },
        }
        for name in [f"a{i:03d}.example.com." for i in range(120)] + ["www.example.com."]
    ]
    change_batch = {"Changes": changes}
    route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch=change_batch)
    assert route53.list_resource_record_sets(HostedZoneId=zone_id, MaxItems="100")["IsTruncated"]
    pages = count_calls(route53, "ListResourceRecordSets")

    collector.sync(ctx.sessions, Route53(route53, page_size=50), records=[RECORD], observed_at=T0)

    with ctx.sessions() as session:
        rows = session.execute(
            select(DnsWeightObservation.record_type, func.count()).group_by(
                DnsWeightObservation.record_type
            )
        ).all()
    assert dict(rows) == {"A": 50, "AAAA": 50, "TXT": 50}
    # three pages of api.example.com., one that starts at www.example.com. and ends the read;
    # the 120 names sorted before it are never listed (the read starts at StartRecordName).
    assert pages.calls == pages.sends == 4


def test_throttling_is_retried_by_botocore_only_then_fails_the_run(
    zone: tuple[Any, str, str], moto_url: str, ctx: AppContext
) -> None:
    client, _zone_id, _hc = zone
    collector.sync(ctx.sessions, Route53(client), records=[RECORD], observed_at=T0)
    throttled = route53_client(moto_url, max_attempts=2)
    counts = throttle(throttled, "ListHostedZones")

    with pytest.raises(Route53Error, match="Throttling: Rate exceeded"):
        collector.sync(
            ctx.sessions,
            Route53(throttled),
            records=[RECORD],
            observed_at=T0 + timedelta(minutes=1),
        )

    # one call by our code; botocore's standard mode made both HTTP attempts
    assert (counts.calls, counts.sends) == (1, 2)
    with ctx.sessions() as session:
        runs = session.scalars(select(SyncRun).order_by(SyncRun.id)).all()
        latest = weights_frame(session, as_of=T0 + timedelta(minutes=5))
    assert [r.status for r in runs] == ["ok", "failed"]
    assert "Throttling" in (runs[-1].error or "")
    assert sorted(latest["set_identifier"]) == ["us-east", "us-west"]


def test_a_throttled_attempt_then_an_answer_is_one_successful_call(
    zone: tuple[Any, str, str], moto_url: str, ctx: AppContext
) -> None:
    throttled = route53_client(moto_url, max_attempts=2)
    counts = throttle(throttled, "ListHostedZones", times=1)

    result = collector.sync(ctx.sessions, Route53(throttled), records=[RECORD], observed_at=T0)

    assert result.stored >= 2
    assert (counts.calls, counts.sends) == (1, 2)


def test_a_record_outside_every_zone_is_a_failed_run_with_the_reason(
    zone: tuple[Any, str, str], ctx: AppContext
) -> None:
    client, _zone_id, _hc = zone

    with pytest.raises(ZoneLookupError, match=r"no hosted zone holds api\.other\.org\."):
        collector.sync(ctx.sessions, Route53(client), records=["api.other.org"], observed_at=T0)

    with ctx.sessions() as session:
        run = session.scalars(select(SyncRun)).one()
    assert run.status == "failed" and "api.other.org" in (run.error or "")


def test_a_name_held_by_two_zones_is_refused_unless_its_zone_is_configured(
    zone: tuple[Any, str, str], ctx: AppContext
) -> None:
    client, zone_id, _hc = zone
    private = client.create_hosted_zone(
        Name="example.com.",
        CallerReference="qd-private",
        HostedZoneConfig={"PrivateZone": True, "Comment": "split horizon"},
        VPC={"VPCRegion": "us-east-1", "VPCId": "vpc-12345678"},
    )["HostedZone"]["Id"].split("/")[-1]

    with pytest.raises(ZoneLookupError) as refused:
        collector.sync(ctx.sessions, Route53(client), records=[RECORD], observed_at=T0)
    configured = collector.sync(
        ctx.sessions,
        Route53(client),
        records=[RECORD],
        zone_ids={RECORD: zone_id},
        observed_at=T0 + timedelta(minutes=1),
    )

    message = str(refused.value)
    assert "several hosted zones are named example.com." in message
    assert f"{zone_id} public" in message and f"{private} private" in message
    with ctx.sessions() as session:
        runs = session.scalars(select(SyncRun).order_by(SyncRun.id)).all()
    assert [r.status for r in runs] == ["failed", "ok"]
    assert runs[0].error == message
    assert configured.stored >= 2


def test_the_most_specific_zone_wins() -> None:
    zones = [HostedZone("ZROOT", "example.com."), HostedZone("ZSUB", "eu.example.com.")]

    assert pick_zone("api.eu.example.com", zones) == "ZSUB"
    assert pick_zone("API.Example.com.", zones) == "ZROOT"
    assert pick_zone("eu.example.com", zones) == "ZSUB"
    with pytest.raises(ZoneLookupError, match=r"no hosted zone holds example\.org\."):
        pick_zone("example.org", zones)
    with pytest.raises(ZoneLookupError, match=r"no hosted zone holds notexample\.com\."):
        pick_zone("notexample.com", zones)
    split = [*zones, HostedZone("ZSUB2", "eu.example.com.", private=True)]
    assert pick_zone("api.example.com", split) == "ZROOT"
    with pytest.raises(ZoneLookupError, match=r"eu\.example\.com\. \(ZSUB public, ZSUB2 private\)"):
        pick_zone("api.eu.example.com", split)
