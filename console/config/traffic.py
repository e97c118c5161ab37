"""Settings for Prometheus, AWS/Route53 and failover probes.

Names are part of the interface: `QUARTERDECK_PROMETHEUS__URL`, `QUARTERDECK_AWS__ENDPOINT_URL`,
`QUARTERDECK_AWS__REGION`, `QUARTERDECK_ROUTE53__RECORDS`, `QUARTERDECK_FAILOVER__PRIMARY_DSN`,
`QUARTERDECK_FAILOVER__STANDBY_DSN`.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class PrometheusSettings(BaseModel):
    url: str | None = None
    region_label: str = "region"


class AwsSettings(BaseModel):
    endpoint_url: str | None = None
    region: str = "us-east-1"


class Route53Settings(BaseModel):
    records: list[str] = Field(default_factory=list)


class FailoverSettings(BaseModel):
    primary_dsn: SecretStr | None = None
    standby_dsn: SecretStr | None = None
    environment: str = "stage"
