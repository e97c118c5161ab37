"""Every client the composition root builds: requests, boto3 (Route53, RDS) and the Route 53
provider over it, psycopg, GitHub, Kubernetes. Built from settings here and handed to the
collectors, jobs and actions, which never construct a client of their own.
"""

from __future__ import annotations

from typing import Any

from collectors import failover
from collectors.github_client import GitHubClient
from console.settings import Settings
from console.settings.github import GitHubSettings
from console.settings.traffic import AwsSettings
from providers.route53 import Route53


def http_session() -> Any:
    """A `requests.Session` for Prometheus."""
    import requests

    session = requests.Session()
    session.headers["User-Agent"] = "quarterdeck"
    return session


def botocore_config(aws: AwsSettings) -> Any:
    """botocore's standard retry mode, the only retry layer for every AWS call we make.

    Standard mode retries throttling (`Throttling`, `PriorRequestNotComplete`, …) and
    transient errors with jittered exponential backoff under a retry quota. botocore's own
    `max_attempts` key counts *retries* (2 means 3 requests); `total_max_attempts` counts the
    first try too, which is what `QUARTERDECK_AWS__MAX_ATTEMPTS` means: one call is at most
    that many HTTP requests.
    """
    from botocore.config import Config

    return Config(
        retries={"mode": "standard", "total_max_attempts": aws.max_attempts},
        connect_timeout=aws.connect_timeout_s,
        read_timeout=aws.read_timeout_s,
    )


def aws_client(settings: Settings, service: str) -> Any:
    """A boto3 client for ``service`` with `botocore_config`'s retries and timeouts.

    Against a local endpoint in demo mode (moto) fixed dummy credentials are used, since moto
    accepts any; everywhere else boto3's own credential chain applies.
    """
    import boto3

    kwargs: dict[str, Any] = {
        "region_name": settings.aws.region,
        "config": botocore_config(settings.aws),
    }
    if settings.aws.endpoint_url:
        kwargs["endpoint_url"] = settings.aws.endpoint_url
        if settings.demo_mode:
            kwargs["aws_access_key_id"] = "quarterdeck-demo"
            kwargs["aws_secret_access_key"] = "quarterdeck-demo"  # noqa: S105 (moto accepts any)
    return boto3.client(service, **kwargs)


def pg_connector(dsn: str, *, timeout_s: int) -> failover.Connect:
    """A callable opening a psycopg connection to ``dsn`` (SQLAlchemy-style URLs accepted)."""
    import psycopg

    conninfo = dsn.replace("postgresql+psycopg://", "postgresql://", 1)

    def connect() -> Any:
        return psycopg.connect(conninfo, connect_timeout=timeout_s)

    return connect


def route53_client(settings: Settings) -> Any:
    """A boto3 Route 53 client for `QUARTERDECK_AWS__ENDPOINT_URL` (moto in tests and demo)."""
    return aws_client(settings, "route53")


def route53(settings: Settings, client: Any | None = None) -> Route53:
    """The Route 53 provider the collector and FlipDnsWeights share (over ``client`` if given).

    The INSYNC waiter polls every `actions.insync_poll_s` for up to `actions.insync_timeout_s`.
    """
    return Route53(
        client if client is not None else route53_client(settings),
        insync_timeout_s=settings.actions.insync_timeout_s,
        poll_s=settings.actions.insync_poll_s,
    )


def kubernetes_core_api(settings: Settings) -> Any:
    """A `CoreV1Api` for the configured API server (token auth when set)."""
    import kubernetes

    k8s = settings.actions.kubernetes
    config = kubernetes.client.Configuration()
    config.host = k8s.host or ""
    if k8s.token is not None:
        config.api_key = {"authorization": f"Bearer {k8s.token.get_secret_value()}"}
    return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(config))


def github_client(settings: GitHubSettings) -> GitHubClient:
    """A GitHub client for the configured API root and token."""
    token = settings.token.get_secret_value() if settings.token else None
    return GitHubClient(
        settings.api_url,
        token,
        timeout_s=settings.timeout_s,
        max_retries=settings.max_retries,
        max_wait_s=settings.max_rate_limit_wait_s,
    )
