"""Guarded actions over HTTP (`/api/actions/*`, `/api/audit/verify`) and the service wiring.

`build_service(ctx)` turns settings into the actions and their providers; the pages, the CLI and
these endpoints all go through it, so each path gets the same server-side checks.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy import select

from actions.base import ActionPolicy
from actions.bundle_pin import KubernetesPins, PinConfig, PinOpaBundle, PinProvider, RegistryPins
from actions.dns_weights import DnsFlipConfig, FlipDnsWeights, Route53Weights
from actions.registry import ActionService, plan_dict
from actions.registry import Response as ActionResponse
from console.auth import actor_of
from console.context import AppContext
from console.http.bundles import load_bundle
from console.settings import Settings
from store.audit import verify_chain
from store.models.actions import ActionPlan
from store.slo import load_slos


def route53_client(settings: Settings) -> Any:
    """A boto3 Route 53 client for `QUARTERDECK_AWS__ENDPOINT_URL` (moto in tests and demo)."""
    from console.services.traffic_pollers import aws_client

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


def build_service(
    settings: Settings,
    *,
    route53: Any | None = None,
    core_api: Any | None = None,
    sleep: Any | None = None,
) -> ActionService:
    """Wire the actions for ``settings``; tests pass their own clients for local peers."""
    cfg = settings.actions

    def provider() -> Route53Weights:
        extra = {"sleep": sleep} if sleep is not None else {}
        return Route53Weights(
            route53 if route53 is not None else route53_client(settings),
            insync_timeout_s=cfg.insync_timeout_s,
            poll_s=cfg.insync_poll_s,
            **extra,
        )

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
                ),
            ),
        ],
        ActionPolicy(
            live_environments=frozenset(cfg.live_environments),
            production_environments=production,
            approval_ttl_s=cfg.approval_ttl_minutes * 60,
            lock_ttl_s=cfg.lock_ttl_minutes * 60,
            verify_timeout_s=cfg.verify_timeout_s,
        ),
    )


def _answer(result: ActionResponse) -> tuple[Response, int]:
    status = (
        200 if result.ok else (404 if result.plan is None and "no plan" in result.message else 409)
    )
    if not result.ok and any(
        w in result.message for w in ("may not", "needs the admin", "two-person")
    ):
        status = 403
    return jsonify(result.as_dict()), status


def make_blueprint(ctx: AppContext) -> Blueprint:
    """Build the action API; every handler needs a signed-in identity, the service checks roles."""
    bp = Blueprint("quarterdeck_actions", __name__)

    def body() -> dict[str, Any]:
        data = request.get_json(silent=True)
        return data if isinstance(data, dict) else {}

    @bp.before_request
    def need_identity() -> tuple[Response, int] | None:
        if getattr(g, "identity", None) is None:
            return jsonify({"error": "sign in first"}), 401
        return None

    @bp.get("/api/actions/plans")
    def plans() -> Response:
        limit = min(int(request.args.get("limit", "50")), 500)
        with ctx.session() as session:
            rows = session.scalars(
                select(ActionPlan).order_by(ActionPlan.requested_at.desc()).limit(limit)
            ).all()
            return jsonify([plan_dict(p) for p in rows])

    @bp.post("/api/actions/plan")
    def plan() -> tuple[Response, int]:
        data = body()
        with ctx.session() as session:
            result = build_service(ctx.settings).plan(
                session,
                actor_of(g.identity),
                str(data.get("action", "")),
                dict(data.get("params") or {}),
                str(data.get("environment", "")),
                reason=str(data.get("reason", "")),
            )
            return _answer(result)

    @bp.post("/api/actions/<plan_id>/approve")
    def approve(plan_id: str) -> tuple[Response, int]:
        with ctx.session() as session:
            return _answer(
                build_service(ctx.settings).approve(session, actor_of(g.identity), plan_id)
            )

    @bp.post("/api/actions/<plan_id>/apply")
    def apply(plan_id: str) -> tuple[Response, int]:
        data = body()
        with ctx.session() as session:
            result = build_service(ctx.settings).apply(
                session,
                actor_of(g.identity),
                plan_id,
                reason=str(data.get("reason", "")),
                live=bool(data.get("live", False)),
                override=[str(r) for r in data.get("override") or []],
            )
            return _answer(result)

    @bp.post("/api/actions/<plan_id>/verify")
    def verify(plan_id: str) -> tuple[Response, int]:
        with ctx.session() as session:
            return _answer(
                build_service(ctx.settings).verify(session, actor_of(g.identity), plan_id)
            )

    @bp.post("/api/actions/<plan_id>/rollback")
    def rollback(plan_id: str) -> tuple[Response, int]:
        with ctx.session() as session:
            result = build_service(ctx.settings).rollback(
                session, actor_of(g.identity), plan_id, reason=str(body().get("reason", ""))
            )
            return _answer(result)

    @bp.get("/api/audit/verify")
    def audit_verify() -> tuple[Response, int]:
        with ctx.session() as session:
            verdict = verify_chain(session)
        return jsonify(verdict.as_dict()), 200 if verdict.ok else 409

    return bp
