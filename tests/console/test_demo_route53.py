"""`make run`'s stand-in Route53: moto on loopback with the demo's weighted record."""

from console.context import AppContext
from console.http.actions import route53_client
from console.services import demo_route53
from tests.conftest import make_settings


def test_demo_mode_serves_weighted_records_for_the_actions_to_flip(tmp_path):
    ctx = AppContext.from_settings(make_settings(tmp_path))
    stop = demo_route53.start(ctx)
    assert stop is not None
    try:
        client = route53_client(ctx.settings)
        # moto's backends are process-wide: other tests' zones may be there too.
        zone = next(
            z["Id"].split("/")[-1]
            for z in client.list_hosted_zones()["HostedZones"]
            if z["CallerReference"] == "quarterdeck-demo"
        )
        records = client.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
        weights = {r["SetIdentifier"]: r["Weight"] for r in records if "Weight" in r}
        assert weights == {"us-east": 50, "us-west": 50}
        assert ctx.settings.aws.endpoint_url.startswith("http://127.0.0.1:")
        assert ctx.settings.route53.records == ["api.example.com."]
        assert "stage" in ctx.settings.actions.live_environments
    finally:
        stop()
        ctx.engine.dispose()


def test_nothing_starts_outside_demo_mode_or_with_a_real_endpoint(tmp_path):
    real = AppContext.from_settings(
        make_settings(tmp_path, aws={"endpoint_url": "https://route53.amazonaws.com"})
    )
    assert demo_route53.start(real) is None
    assert real.settings.route53.records == []
