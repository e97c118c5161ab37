"""Demo mode only: moto's Route53 server standing in for AWS, so `make run` can flip weights.

`start_moto` runs moto on a free loopback port; `seed_records` creates `api.example.com.` with
weighted records us-east / us-west at 50/50 (health check on both). The composition root
(`console.wiring.demo_route53`) decides when to start it and derives the demo's settings from its
URL; nothing here reads or changes settings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

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
