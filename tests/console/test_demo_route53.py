"""`make run`'s stand-in Route53: moto on loopback with the demo's weighted record."""

from console.clients import route53_client
from console.wiring import with_demo_route53
from tests.conftest import make_settings


def test_demo_mode_serves_weighted_records_for_the_actions_to_flip(tmp_path):
    settings = make_settings(tmp_path)
    derived, stop = with_demo_route53(settings)
    assert stop is not None
    try:
        client = route53_client(derived)
        # moto's backends are process-wide: other tests' zones may be there too.
        zone = next(
            z["Id"].split("/")[-1]
            for z in client.list_hosted_zones()["HostedZones"]
            if z["CallerReference"] == "quarterdeck-demo"
        )
        records = client.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
        weights = {
            r["SetIdentifier"]: r["Weight"]
            for r in records
            if "Weight" in r and r["Name"] == "api.example.com."
        }
        assert weights == {"us-east": 50, "us-west": 50}
        assert derived.aws.endpoint_url.startswith("http://127.0.0.1:")
        assert derived.route53.records == ["api.example.com.", "www.example.com."]
        assert "stage" in derived.actions.live_environments
        # The settings the caller built are left as they were: the demo derives, never mutates.
        assert settings.aws.endpoint_url is None and settings.route53.records == []
    finally:
        stop()


def test_nothing_starts_outside_demo_mode_or_with_a_real_endpoint(tmp_path):
    real = make_settings(tmp_path, aws={"endpoint_url": "https://route53.amazonaws.com"})
    derived, stop = with_demo_route53(real)
    assert stop is None and derived is real
    assert real.route53.records == []
