"""Settings for Prometheus, AWS/Route53 and failover probes.

Names are part of the interface: `QUARTERDECK_PROMETHEUS__URL`, `QUARTERDECK_AWS__ENDPOINT_URL`,
`QUARTERDECK_AWS__REGION`, `QUARTERDECK_AWS__MAX_ATTEMPTS`, `QUARTERDECK_ROUTE53__RECORDS`,
`QUARTERDECK_ROUTE53__ZONE_IDS`, `QUARTERDECK_FAILOVER__PRIMARY_DSN`,
`QUARTERDECK_FAILOVER__STANDBY_DSN`.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

from collectors.prometheus import DEFAULT_TRAFFIC_QUERIES


class PrometheusSettings(BaseModel):
    """Where Prometheus is and what to ask it (one PromQL per signal; ingress-nginx defaults)."""

    url: str | None = None
    region_label: str = Field(
        default="region",
        description="label carrying the region, attached at scrape time (target labels or "
        "relabel_configs); external_labels never appear in query answers",
    )
    default_region: str | None = Field(
        default=None, description="region of series without the region label (single region)"
    )
    ingress_label: str = "ingress"
    step_s: int = Field(default=15, ge=1)
    queries: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_TRAFFIC_QUERIES))
    lookback_minutes: int = Field(default=60, ge=1, description="first run: how far back")
    settle_s: int = Field(
        default=30, ge=0, description="ranges end this far behind now (points still arriving)"
    )
    poll_interval_s: float = Field(default=30.0, gt=0)
    timeout_s: float = Field(default=30.0, gt=0, description="per query_range request")
    slo_interval_s: float = Field(
        default=60.0, gt=0, description="how often the SLI collector evaluates the SLO queries"
    )
    console_url: str = Field(
        default="http://localhost:8050",
        description="the console as Prometheus/Alertmanager reach it: generated alerts link "
        "their runbook_url here and the Alertmanager snippet posts to <console_url>/ingest/…",
    )
    retention_days: int | None = Field(
        default=30, ge=1, description="raw 15 s samples kept this long; hourly rollups are kept"
    )


class AwsSettings(BaseModel):
    """boto3 client settings; `endpoint_url` points at moto in tests and the demo."""

    endpoint_url: str | None = None
    region: str = "us-east-1"
    max_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description="botocore standard mode: tries per call, the first included (the only retries)",
    )
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=30.0, gt=0)


class Route53Settings(BaseModel):
    """Weighted record names to watch (e.g. `api.example.com`)."""

    records: list[str] = Field(default_factory=list)
    zone_ids: dict[str, str] = Field(
        default_factory=dict,
        description="record → hosted zone id, for names held by several zones (split horizon)",
    )
    poll_interval_s: float = Field(default=60.0, gt=0)


class FailoverSettings(BaseModel):
    """The PostgreSQL pair the probe watches and the RDS sources whose events mark failovers."""

    primary_dsn: SecretStr | None = None
    standby_dsn: SecretStr | None = None
    environment: str = "stage"
    rds_sources: list[str] = Field(
        default_factory=list, description="`SourceType:SourceIdentifier`, e.g. db-cluster:stage-db"
    )
    probe_interval_s: float = Field(default=2.0, gt=0)
    rds_poll_interval_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: int = Field(default=3, ge=1)
