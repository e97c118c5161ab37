"""Demo mode only: moto's Route53 server standing in for AWS, so `make run` can flip weights.

Starts moto on a free loopback port, creates `api.example.com.` with weighted records us-east /
us-west at 50/50 (health check on both, as the plan's §5.1 Terraform declares), and points the
console's AWS settings at it before any request is served. Outside demo mode, or when an AWS
endpoint is configured, or when moto is not installed (`pip install quarterdeck[demo]`), it
does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from console.context import AppContext

log = logging.getLogger(__name__)

DEMO_RECORD = "api.example.com."
DEMO_ZONE = "example.com."


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
    client.change_resource_record_sets(
        HostedZoneId=zone_id, ChangeBatch={"Comment": "demo", "Changes": changes}
    )
    return zone_id


def start(ctx: AppContext) -> Callable[[], None] | None:
    """Run moto for Route53 in demo mode and point `ctx.settings.aws` at it."""
    settings = ctx.settings
    if not settings.demo_mode or settings.aws.endpoint_url:
        return None
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        log.warning("moto is not installed: demo DNS flips need QUARTERDECK_AWS__ENDPOINT_URL")
        return None
    from console.services.traffic_pollers import aws_client

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    settings.aws.endpoint_url = f"http://{host}:{port}"
    if not settings.route53.records:
        settings.route53.records = [DEMO_RECORD]
    if "stage" not in settings.actions.live_environments:
        settings.actions.live_environments = [*settings.actions.live_environments, "stage"]
    seed_records(aws_client(settings, "route53"))
    log.info("demo Route53 (moto) on %s: %s weighted 50/50", settings.aws.endpoint_url, DEMO_RECORD)
    return server.stop
