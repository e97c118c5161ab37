"""Every client the composition root builds: requests, boto3 (Route53, RDS), psycopg, GitHub,
Kubernetes. Built from settings here and handed to the collectors, jobs and actions, which never
construct a client of their own.
"""

from __future__ import annotations

from typing import Any

from collectors import failover
from collectors.github_client import GitHubClient
from console.settings import Settings
from console.settings.github import GitHubSettings


def http_session() -> Any:
    """A `requests.Session` for Prometheus."""
    import requests

    session = requests.Session()
    session.headers["User-Agent"] = "quarterdeck"
    return session


def aws_client(settings: Settings, service: str) -> Any:
    """A boto3 client for ``service`` with standard-mode retries (throttling backs off).

    Against a local endpoint in demo mode (moto) fixed dummy credentials are used, since moto
    accepts any; everywhere else boto3's own credential chain applies.
    """
    import boto3
    from botocore.config import Config

    kwargs: dict[str, Any] = {
        "region_name": settings.aws.region,
        "config": Config(retries={"mode": "standard", "max_attempts": settings.aws.max_attempts}),
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
