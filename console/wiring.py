"""The composition root: settings → (demo stand-ins) → engine and context → console → jobs.

Every entry point (`quarterdeck serve`, `console.wsgi`, the CLI commands) builds its pieces here,
in the order written below; nothing is discovered by file name and no module changes settings
after they are built (the demo derives new settings instead).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from actions.base import SYSTEM_CLOCK, ActionPolicy, Clock
from actions.bundle_pin import KubernetesPins, PinConfig, PinOpaBundle, PinProvider, RegistryPins
from actions.dns_weights import DnsFlipConfig, FlipDnsWeights
from actions.registry import ActionService
from console.clients import kubernetes_core_api, route53_client
from console.clients import route53 as route53_provider
from console.context import AppContext
from console.settings import Settings
from providers.route53 import Route53
from store.models import BundleRevision
from store.slo import load_slos

log = logging.getLogger(__name__)

Stop = Callable[[], None]


def registry_dir(settings: Settings) -> Path:
    """The local registry folder: `<bundle>/<revision>.tar.gz` files."""
    return (
        Path(settings.actions.bundle_dir)
        if settings.actions.bundle_dir
        else settings.var_dir / "bundles"
    )


def load_bundle(settings: Settings, revision: BundleRevision) -> bytes | None:
    """Read a registered revision's tarball: the registry's stored copy, else its source.

    The demo's revisions are rebuilt from their files, deterministically (same bytes, same
    sha256 in every process). Callers compare the bytes with the registered sha256.
    """
    from collectors.bundles import stored_path

    stored = stored_path(registry_dir(settings), revision.bundle, revision.revision)
    if stored is not None and stored.is_file():
        return stored.read_bytes()
    source = revision.source
    if source.startswith("demo://") and settings.demo_mode:
        from demo.seed import bundle_tarball

        return bundle_tarball(revision.revision)
    candidates = []
    if source.startswith("file://"):
        candidates.append(Path(source.removeprefix("file://")))
    elif source.startswith("/"):
        candidates.append(Path(source))
    candidates.append(registry_dir(settings) / revision.bundle / f"{revision.revision}.tar.gz")
    for path in candidates:
        if path.is_file():
            return path.read_bytes()
    return None


def build_service(
    settings: Settings,
    *,
    route53: Any | None = None,
    core_api: Any | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> ActionService:
    """Wire the actions for ``settings``; tests pass their own clients for local peers.

    ``clock`` is the one "now" of the service and its actions (tests and the demo seed inject
    theirs).
    """
    from console.jobs.runbooks import runbook_actions

    cfg = settings.actions

    def provider() -> Route53:
        return route53_provider(settings, route53)

    pin_providers: list[PinProvider] = [RegistryPins()]
    if core_api is not None or cfg.kubernetes.host:
        pin_providers.append(
            KubernetesPins(
                core_api if core_api is not None else kubernetes_core_api(settings),
                namespace=cfg.kubernetes.namespace,
                namespaces=cfg.kubernetes.namespaces,
                config_map=cfg.kubernetes.config_map,
                key=cfg.kubernetes.key,
            )
        )
    production = frozenset(cfg.production_environments)
    return ActionService(
        [
            FlipDnsWeights(
                provider,
                DnsFlipConfig(
                    max_step_pct=cfg.max_step_pct,
                    min_healthy_regions=cfg.min_healthy_regions,
                    slos=tuple(load_slos(settings.data_dir / "slos")),
                    synthetic_urls=dict(cfg.synthetic_urls),
                ),
                clock=clock,
            ),
            PinOpaBundle(
                pin_providers,
                lambda revision: load_bundle(settings, revision),
                PinConfig(
                    stage_environment=cfg.stage_environment,
                    production_environments=production,
                    soak=timedelta(hours=cfg.soak_hours),
                    replay_last=cfg.replay_last,
                    max_flip_pct=cfg.max_flip_pct,
                    max_not_evaluated_pct=cfg.max_not_evaluated_pct,
                    stale_after_intervals=settings.opa.stale_after_intervals,
                    stale_min_s=settings.opa.stale_min_s,
                ),
                clock=clock,
            ),
            *runbook_actions(settings, clock=clock),
        ],
        ActionPolicy(
            live_environments=frozenset(cfg.live_environments),
            production_environments=production,
            approval_ttl_s=cfg.approval_ttl_minutes * 60,
            lock_ttl_s=cfg.lock_ttl_minutes * 60,
            verify_timeout_s=cfg.verify_timeout_s,
        ),
        clock=clock,
    )


def with_demo_route53(settings: Settings) -> tuple[Settings, Stop | None]:
    """In demo mode without an AWS endpoint, start moto's Route53 and derive settings for it.

    Returns the settings to build everything else with (the demo's endpoint, record and `stage`
    as a live environment) and moto's stop function; outside demo mode, or with an endpoint
    configured, or without moto installed, the settings come back unchanged with no stop.
    """
    if not settings.demo_mode or settings.aws.endpoint_url:
        return settings, None
    from demo import route53 as demo_route53

    started = demo_route53.start_moto()
    # moto serves through werkzeug, which logs every Route53 poll at INFO: keep the console's log
    # for the console.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    if started is None:
        return settings, None
    endpoint_url, stop = started
    live = settings.actions.live_environments
    derived = settings.model_copy(
        update={
            "aws": settings.aws.model_copy(update={"endpoint_url": endpoint_url}),
            "route53": settings.route53.model_copy(
                update={
                    "records": settings.route53.records
                    or [demo_route53.DEMO_RECORD, demo_route53.DEMO_ALIAS_RECORD]
                }
            ),
            "actions": settings.actions.model_copy(
                update={"live_environments": live if "stage" in live else [*live, "stage"]}
            ),
        }
    )
    demo_route53.seed_records(route53_client(derived))
    log.info("demo Route53 (moto) on %s: %s weighted 50/50", endpoint_url, demo_route53.DEMO_RECORD)
    return derived, stop


def start_jobs(ctx: AppContext) -> list[Stop]:
    """Start the background jobs of `quarterdeck serve`, in this order; return their stops.

    1. The traffic pollers (Prometheus, Route53, failover probe) for whatever is configured.
    2. The GitHub poller, when repositories and a token are set; then the runbook job (always:
       it advances runbook runs started from the page or the CLI, under the `runbooks` lease).
    3. In demo mode only, the live simulator (after the pollers, so a configured Route53 poller's
       first snapshot is what the simulator's observed share follows).
    """
    from console.jobs import github, runbooks, traffic

    stops: list[Stop] = []
    for start in (traffic.start, github.start, runbooks.start):
        stop = start(ctx)
        if stop is not None:
            stops.append(stop)
    if ctx.settings.demo_mode:
        from demo import simulator

        stops.append(simulator.start(ctx.sessions))
    return stops
