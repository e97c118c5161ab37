"""Demo mode only: moto's Route53 server standing in for AWS, so `make run` can flip weights.

`start_moto` runs moto on a free loopback port; `seed_records` creates `api.example.com.` with
weighted records us-east / us-west at 50/50 (health check on both) and `www.example.com.`, alias
records blue / green with `EvaluateTargetHealth` and no health check, as the plan's Terraform
writes them (§5.1): the console has no health evidence for them, so a flip reads `unknown`.

The demo control `set_region_health(client, region, healthy=False)` (the Actions page's "Demo:
region health" buttons) *inverts* that region's Route 53 health check — what an operator does in
AWS to test failover: Route 53 then treats the check as unhealthy while its checkers succeed, and
`target-region-healthy` blocks a flip towards it. The composition root
(`console.wiring.demo_route53`) decides when to start it and derives the demo's settings from its
URL; nothing here reads or changes settings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

DEMO_RECORD = "api.example.com."
DEMO_ALIAS_RECORD = "www.example.com."
DEMO_ZONE = "example.com."
DEMO_REGIONS = ("us-east", "us-west")
# The load balancers the alias records point at (zone id: us-east-1's ELB zone).
ELB_ZONE = "Z35SXDOTRQ7X7K"


def _health_check_ids(client: Any) -> dict[str, str]:
    """Demo region → its health check id (by the caller reference `seed_records` gave it)."""
    found = {}
    for check in client.list_health_checks().get("HealthChecks") or []:
        ref = str(check.get("CallerReference", ""))
        if ref.startswith("quarterdeck-demo-"):
            found[ref.removeprefix("quarterdeck-demo-")] = str(check["Id"])
    return found


def set_region_health(client: Any, region: str, *, healthy: bool) -> str:
    """Demo control: make ``region`` unhealthy (invert its health check) or healthy again.

    Returns the health check id; raises ValueError for a region the demo does not have.
    """
    ids = _health_check_ids(client)
    if region not in ids:
        raise ValueError(f"the demo has no health check for {region!r} (has {sorted(ids)})")
    client.update_health_check(HealthCheckId=ids[region], Inverted=not healthy)
    return ids[region]


def region_health_controls(client: Any) -> dict[str, bool]:
    """Demo region → False while the demo control holds it unhealthy (its check inverted)."""
    states = {}
    for region, hc in sorted(_health_check_ids(client).items()):
        config = client.get_health_check(HealthCheckId=hc)["HealthCheck"]["HealthCheckConfig"]
        states[region] = not bool(config.get("Inverted"))
    return states


def seed_records(client: Any) -> str:
    """Create the demo zone, health checks and 50/50 weighted records; return the zone id."""
    zone_id = str(
        client.create_hosted_zone(Name=DEMO_ZONE, CallerReference="quarterdeck-demo")["HostedZone"][
            "Id"
        ]
    ).split("/")[-1]
    changes = []
    for region, address in (("us-east", "10.0.0.10"), ("us-west", "10.0.1.10")):
        check = client.create_health_check(
            CallerReference=f"quarterdeck-demo-{region}",
            HealthCheckConfig={
                "Type": "HTTPS",
                "FullyQualifiedDomainName": f"gw-{region}.example.com",
                "Port": 443,
                "ResourcePath": "/ready",
                "RequestInterval": 30,
                "FailureThreshold": 3,
            },
        )["HealthCheck"]["Id"]
        changes.append(
            {
                "Action": "CREATE",
                "ResourceRecordSet": {
                    "Name": DEMO_RECORD,
                    "Type": "A",
                    "SetIdentifier": region,
                    "Weight": 50,
                    "TTL": 60,
                    "ResourceRecords": [{"Value": address}],
                    "HealthCheckId": check,
                },
            }
        )
    for color, weight in (("blue", 100), ("green", 0)):
        changes.append(
            {
                "Action": "CREATE",
                "ResourceRecordSet": {
                    "Name": DEMO_ALIAS_RECORD,
                    "Type": "A",
                    "SetIdentifier": color,
                    "Weight": weight,
                    "AliasTarget": {
                        "HostedZoneId": ELB_ZONE,
                        "DNSName": f"dualstack.web-{color}.us-east-1.elb.amazonaws.com.",
                        "EvaluateTargetHealth": True,
                    },
                },
            }
        )
    client.change_resource_record_sets(
        HostedZoneId=zone_id, ChangeBatch={"Comment": "demo", "Changes": changes}
    )
    return zone_id


def start_moto() -> tuple[str, Callable[[], None]] | None:
    """Run moto's server on a free loopback port; return (endpoint URL, stop), or None.

    None when moto is not installed (`pip install quarterdeck[demo]`). The caller (the composition
    root) derives the demo's settings from the URL and seeds the records with `seed_records`.
    """
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        log.warning("moto is not installed: demo DNS flips need QUARTERDECK_AWS__ENDPOINT_URL")
        return None
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}", server.stop
