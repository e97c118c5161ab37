"""The composition root wires the traffic collectors to real peers from the documented
environment variables (`QUARTERDECK_PROMETHEUS__URL`, `QUARTERDECK_AWS__ENDPOINT_URL`,
`QUARTERDECK_AWS__REGION`, `QUARTERDECK_ROUTE53__RECORDS`, `QUARTERDECK_FAILOVER__PRIMARY_DSN`,
`QUARTERDECK_FAILOVER__STANDBY_DSN`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from console.context import AppContext
from console.jobs import traffic as traffic_pollers
from console.settings import Settings
from store.migrate import upgrade
from store.models import DnsWeightObservation, ReplicationLagSample, TrafficSample
from tests.peers_traffic import PgPair, boto_client


@pytest.fixture
def env_ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], AppContext]]:
    """A factory building the context from the environment, as `quarterdeck` does."""
    monkeypatch.setenv("QUARTERDECK_DEMO_MODE", "true")
    monkeypatch.setenv("QUARTERDECK_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("QUARTERDECK_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    built: list[AppContext] = []

    def build() -> AppContext:
        ctx = AppContext.from_settings(Settings())
        upgrade(ctx.engine)
        built.append(ctx)
        return ctx

    yield build
    for ctx in built:
        ctx.engine.dispose()


def test_prometheus_url_from_the_environment(env_ctx, prometheus_peer, monkeypatch) -> None:
    monkeypatch.setenv("QUARTERDECK_PROMETHEUS__URL", prometheus_peer.url)
    # The peer has seconds of data: ask at 1 s resolution up to now.
    monkeypatch.setenv("QUARTERDECK_PROMETHEUS__STEP_S", "1")
    monkeypatch.setenv("QUARTERDECK_PROMETHEUS__SETTLE_S", "0")
    monkeypatch.setenv("QUARTERDECK_PROMETHEUS__LOOKBACK_MINUTES", "1")
    ctx = env_ctx()

    result = traffic_pollers.run_prometheus(ctx)

    assert result.stored > 0
    with ctx.sessions() as session:
        assert session.scalars(select(TrafficSample.region).distinct()).all()


def test_route53_records_and_aws_endpoint_from_the_environment(
    env_ctx, moto_endpoint: str, monkeypatch
) -> None:
    client = boto_client("route53", moto_endpoint)
    zone = client.create_hosted_zone(Name="example.com.", CallerReference="env")["HostedZone"]
    client.change_resource_record_sets(
        HostedZoneId=zone["Id"],
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": "api.example.com.",
                        "Type": "A",
                        "SetIdentifier": "us-east",
                        "Weight": 100,
                        "TTL": 60,
                        "ResourceRecords": [{"Value": "192.0.2.1"}],
                    },
                }
            ]
        },
    )
    monkeypatch.setenv("QUARTERDECK_AWS__ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("QUARTERDECK_AWS__REGION", "us-west-2")
    monkeypatch.setenv("QUARTERDECK_ROUTE53__RECORDS", '["api.example.com"]')
    ctx = env_ctx()

    traffic_pollers.run_route53(ctx)

    with ctx.sessions() as session:
        weights = session.execute(
            select(DnsWeightObservation.set_identifier, DnsWeightObservation.weight)
        ).all()
    assert [tuple(w) for w in weights] == [("us-east", 100)]


def test_failover_dsns_from_the_environment(env_ctx, pg_pair: PgPair, monkeypatch) -> None:
    monkeypatch.setenv("QUARTERDECK_FAILOVER__PRIMARY_DSN", pg_pair.primary_dsn)
    monkeypatch.setenv("QUARTERDECK_FAILOVER__STANDBY_DSN", pg_pair.standby_dsn)
    ctx = env_ctx()

    lines = traffic_pollers.run_failover(ctx)

    assert lines[0].startswith("probe: standby recovery, 1 lag sample(s)")
    with ctx.sessions() as session:
        assert session.scalars(select(ReplicationLagSample.replica)).all() == ["standby1"]


def test_no_poller_starts_when_nothing_is_configured(env_ctx) -> None:
    assert traffic_pollers.start(env_ctx()) is None
