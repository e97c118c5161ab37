"""In-process pollers for Prometheus, Route53 and the failover probe, and the clients they use.

The composition root builds the clients here (requests, boto3, psycopg) and hands them to the
collectors. `start(ctx)` runs a poller thread per configured source under `quarterdeck serve`;
`quarterdeck collect prometheus|route53|failover|slo` runs the same passes from the CLI. The SLI
pass (`run_slis`) evaluates every SLO's good/total queries against the same Prometheus.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from collectors import failover, prometheus, route53, sli
from console import evidence_service
from console.clients import aws_client, http_session, pg_connector, route53_client
from console.clients import route53 as route53_provider
from console.context import AppContext
from console.settings import Settings
from store.ingest import IngestResult

log = logging.getLogger(__name__)


def run_prometheus(ctx: AppContext, http: Any | None = None) -> IngestResult:
    """One Prometheus pass from the cursor to now (raises after recording a failure)."""
    cfg = ctx.settings.prometheus
    if not cfg.url:
        raise ValueError("QUARTERDECK_PROMETHEUS__URL is not set")
    poll = prometheus.TrafficPoll(
        base_url=cfg.url,
        queries=cfg.queries,
        step_s=cfg.step_s,
        region_label=cfg.region_label,
        ingress_label=cfg.ingress_label,
        lookback=timedelta(minutes=cfg.lookback_minutes),
        settle=timedelta(seconds=cfg.settle_s),
        retention=timedelta(days=cfg.retention_days) if cfg.retention_days else None,
        timeout_s=cfg.timeout_s,
        default_region=cfg.default_region,
    )
    return prometheus.sync_traffic(ctx.sessions, http or http_session(), poll)


def run_slis(ctx: AppContext, http: Any | None = None) -> sli.SliReport:
    """One SLI pass: every SLO's good/total from Prometheus, from its cursor to now.

    Failures are per SLO (recorded on Ingest health as `prometheus.sli:<service>/<slo>`).
    """
    cfg = ctx.settings.prometheus
    if not cfg.url:
        raise ValueError("QUARTERDECK_PROMETHEUS__URL is not set")
    return sli.sync_slis(
        ctx.sessions,
        http or http_session(),
        evidence_service.slo_definitions(ctx),
        base_url=cfg.url,
        timeout_s=cfg.timeout_s,
        settle=timedelta(seconds=cfg.settle_s),
    )


def run_route53(ctx: AppContext, client: Any | None = None) -> IngestResult:
    """One Route53 snapshot of the configured records (raises after recording a failure).

    ``client`` is a boto3 Route 53 client (default: built from settings); it is read through
    the same provider FlipDnsWeights uses.
    """
    cfg = ctx.settings.route53
    if not cfg.records:
        raise ValueError("QUARTERDECK_ROUTE53__RECORDS is not set")
    return route53.sync(
        ctx.sessions,
        route53_provider(ctx.settings, client),
        records=cfg.records,
        zone_ids=cfg.zone_ids,
    )


def failover_configured(settings: Settings) -> bool:
    cfg = settings.failover
    return bool(cfg.primary_dsn or cfg.standby_dsn or cfg.rds_sources)


def run_failover(ctx: AppContext, rds_client: Any | None = None) -> list[str]:
    """One probe tick (when DSNs are set) and one RDS events pass (when sources are set).

    Returns one line per part; a part that failed is recorded on Ingest health and reported
    in its line rather than stopping the other part.
    """
    cfg = ctx.settings.failover
    lines: list[str] = []
    if cfg.primary_dsn or cfg.standby_dsn:
        timeout = cfg.connect_timeout_s
        report = failover.probe_tick(
            ctx.sessions,
            environment=cfg.environment,
            primary=pg_connector(cfg.primary_dsn.get_secret_value(), timeout_s=timeout)
            if cfg.primary_dsn
            else None,
            standby=pg_connector(cfg.standby_dsn.get_secret_value(), timeout_s=timeout)
            if cfg.standby_dsn
            else None,
            records=ctx.settings.route53.records,
        )
        marked = ", ".join(report.marked) or "no phase"
        lines.append(
            f"probe: standby {report.standby_role or 'unreachable'}, {report.lag_samples} lag "
            f"sample(s), {marked}"
            + (f"; errors: {'; '.join(report.errors)}" if report.errors else "")
        )
    if cfg.rds_sources:
        sources = [tuple(s.split(":", 1)) for s in cfg.rds_sources if ":" in s]
        try:
            result = failover.sync_rds(
                ctx.sessions,
                rds_client or aws_client(ctx.settings, "rds"),
                environment=cfg.environment,
                sources=[(t, i) for t, i in sources],
                records=ctx.settings.route53.records,
            )
            lines.append(f"rds: {result.as_dict()}")
        except Exception as exc:
            lines.append(f"rds: failed: {exc}")
    if not lines:
        raise ValueError(
            "set QUARTERDECK_FAILOVER__PRIMARY_DSN/STANDBY_DSN or QUARTERDECK_FAILOVER__RDS_SOURCES"
        )
    return lines


class Poller:
    """Calls ``fn`` every ``interval_s`` seconds on a daemon thread until stopped.

    A failing pass is already recorded on Ingest health by the collector; the poller logs it
    and keeps going, so one bad poll never stops the console.
    """

    def __init__(self, name: str, fn: Callable[[], object], interval_s: float) -> None:
        self.name = name
        self._fn = fn
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"poller-{name}", daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._fn()
            except Exception as exc:
                log.warning("%s poll failed: %s", self.name, exc)
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def start(ctx: AppContext) -> Callable[[], None] | None:
    """Start a poller per configured source; None when none is configured."""
    settings = ctx.settings
    pollers: list[Poller] = []
    if settings.prometheus.url:
        http = http_session()
        pollers.append(
            Poller(
                "prometheus",
                lambda: run_prometheus(ctx, http),
                settings.prometheus.poll_interval_s,
            )
        )
        pollers.append(
            Poller("slo", lambda: run_slis(ctx, http), settings.prometheus.slo_interval_s)
        )
    if settings.route53.records:
        r53 = route53_client(settings)
        pollers.append(
            Poller("route53", lambda: run_route53(ctx, r53), settings.route53.poll_interval_s)
        )
    if failover_configured(settings):
        pollers.append(
            Poller("failover", lambda: run_failover(ctx), settings.failover.probe_interval_s)
        )
    if not pollers:
        return None
    for poller in pollers:
        poller.start()

    def stop() -> None:
        for poller in pollers:
            poller.stop()

    return stop
