"""Egress and error-budget HTTP: `POST /ingest/exports`, `POST /ingest/incidents`,
`GET /api/gates/<service>`, evidence downloads through short-lived signed URLs.

- `/ingest/exports` (bearer token) takes JSON lines; one bad line refuses the whole request with
  400 naming every bad line and field, and stores nothing. `/ingest/incidents` (bearer token)
  takes one incident object or a list the same way (a later report updates resolution).
- `/api/gates/<service>` answers 200 `{"state": "normal"}` or 423 `{"state": "freeze", "reason"}`
  from the error-budget policy, so CI can ask before deploying (`?at=` evaluates another instant).
- `/evidence/packs/<id>/download?token=…` checks the HMAC token (`sub`, `scope`, `exp` ≤ 10 min),
  limits downloads per user (429 + `Retry-After`, never 5xx), renders the pack watermarked for
  this download, answers with `X-Export-User/-Id/-Timestamp`, and records every attempt as an
  export event.
"""

from __future__ import annotations

import hmac
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from collectors import exports, incidents
from collectors.base import InvalidItem, parse_time
from console import evidence_service as service
from console.context import AppContext
from egress.limiter import RateLimiter, make_limiter
from egress.tokens import TokenError, verify_token
from evidence.pack import EvidenceError
from evidence.signing import SigningKeyError
from store.ingest import record_sync_run, utcnow
from store.queries.reliability import policy_state
from store.slo import BURN_WINDOWS, SloConfigError, format_duration

log = logging.getLogger(__name__)

MAX_EXPORT_BYTES = 10 * 1024 * 1024
DEMO_EXPORTS_TOKEN = "quarterdeck-demo-exports-token"  # noqa: S105 (demo mode only, logged)
DEMO_INCIDENTS_TOKEN = "quarterdeck-demo-incidents-token"  # noqa: S105 (demo mode only, logged)
MAX_INCIDENTS = 1000


def _error(status: int, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"error": message, **extra}), status


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def exports_token(ctx: AppContext) -> str | None:
    """The `/ingest/exports` bearer token (the demo token in demo mode when none is set)."""
    cfg = service.config(ctx)
    if cfg.ingest_token:
        return cfg.ingest_token
    return DEMO_EXPORTS_TOKEN if cfg.demo_mode else None


def incidents_token(ctx: AppContext) -> str | None:
    """The `/ingest/incidents` bearer token (the demo token in demo mode when none is set)."""
    cfg = service.config(ctx)
    if cfg.incidents_token:
        return cfg.incidents_token
    return DEMO_INCIDENTS_TOKEN if cfg.demo_mode else None


def _bearer_refusal(expected: str | None, variable: str, path: str) -> tuple[Response, int] | None:
    """None when the request carries ``expected`` as its bearer token, else the answer."""
    if expected is None:
        return _error(503, f"{path} token not configured: set {variable}")
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        response, status = _error(401, "missing bearer token (Authorization: Bearer …)")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response, status
    if not hmac.compare_digest(presented.strip().encode(), expected.encode()):
        response, status = _error(401, f"bearer token is not valid for {path}")
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response, status
    return None


def _gate_body(ctx: AppContext, service_name: str, at: datetime) -> tuple[dict[str, Any], int]:
    slos = service.slo_definitions(ctx)
    if not any(s.service == service_name for s in slos):
        return {"error": f"no SLO is defined for service {service_name!r}"}, 404
    with ctx.session() as session:
        state, reason, statuses = policy_state(session, slos, service=service_name, as_of=at)
    body: dict[str, Any] = {
        "service": service_name,
        "state": state,
        "as_of": _iso(at),
        "slos": [
            {
                "slo": s.slo.slo,
                "objective": s.slo.objective,
                "window": s.slo.window,
                "state": s.state,
                "no_data": s.no_data,
                "samples": s.samples,
                "budget_remaining": None
                if s.budget_remaining is None
                else round(s.budget_remaining, 6),
                "burn_rates": {
                    format_duration(w): None if s.burn[w] is None else round(s.burn[w] or 0, 4)
                    for w in BURN_WINDOWS
                },
                "alerts": [f"{p.pair.severity} {p.pair.label}" for p in s.firing],
                "reason": s.reason,
            }
            for s in statuses
        ],
    }
    if reason:
        body["reason"] = reason
    return body, 423 if state == "freeze" else 200


def make_blueprint(ctx: AppContext, *, limiter: RateLimiter | None = None) -> Blueprint:
    """Build the egress blueprint; ``limiter`` overrides the one built from settings."""
    bp = Blueprint("egress", __name__)
    cfg = service.config(ctx)
    downloads = limiter or make_limiter(
        limit=cfg.rate_limit,
        window_s=cfg.rate_window_s,
        redis_url=cfg.redis_url,
        prefix=cfg.rate_key_prefix,
    )
    if cfg.demo_mode and not cfg.ingest_token:
        log.warning("demo mode: /ingest/exports bearer token is %r", DEMO_EXPORTS_TOKEN)
    if cfg.demo_mode and not cfg.incidents_token:
        log.warning("demo mode: /ingest/incidents bearer token is %r", DEMO_INCIDENTS_TOKEN)

    @bp.post("/ingest/exports")
    def ingest_exports() -> tuple[Response, int]:
        refused = _bearer_refusal(
            exports_token(ctx), "QUARTERDECK_INGEST__EXPORTS_TOKEN", "/ingest/exports"
        )
        if refused:
            return refused
        if (request.content_length or 0) > MAX_EXPORT_BYTES:
            return _error(413, f"body larger than {MAX_EXPORT_BYTES} bytes")
        try:
            text = request.get_data().decode("utf-8")
        except UnicodeDecodeError:
            return _error(400, "body: not UTF-8 text")
        rows, errors = exports.parse_export_lines(text)
        if errors:
            return _error(
                400,
                f"{len(errors)} invalid line(s): nothing stored",
                problems=[str(e) for e in errors],
            )
        if not rows:
            return _error(400, "body: expected JSON lines of export events")
        received = utcnow()
        try:
            with ctx.session() as session:
                result = exports.load_export_events(session, rows)
                record_sync_run(session, source=exports.SOURCE, started_at=received, result=result)
        except Exception as exc:
            log.exception("storing export events failed")
            return _error(503, f"store unavailable: {type(exc).__name__}")
        return jsonify({"lines": len(rows), **result.as_dict()}), 200

    @bp.post("/ingest/incidents")
    def ingest_incidents() -> tuple[Response, int]:
        refused = _bearer_refusal(
            incidents_token(ctx), "QUARTERDECK_INGEST__INCIDENTS_TOKEN", "/ingest/incidents"
        )
        if refused:
            return refused
        try:
            body = json.loads(request.get_data())
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, f"body: malformed JSON ({exc})")
        items = body if isinstance(body, list) else [body]
        if not items or len(items) > MAX_INCIDENTS:
            return _error(400, f"body: expected 1 to {MAX_INCIDENTS} incident objects")
        problems = []
        for index, item in enumerate(items):
            try:
                incidents.transform_incident(item)
            except InvalidItem as exc:
                problems.append(f"item {index + 1}: {exc}")
        if problems:
            return _error(400, "invalid incident(s): nothing stored", problems=problems)
        received = utcnow()
        try:
            with ctx.session() as session:
                result = incidents.ingest_incidents(session, items, received_at=received)
                record_sync_run(
                    session, source=incidents.SOURCE, started_at=received, result=result
                )
        except Exception as exc:
            log.exception("storing incidents failed")
            return _error(503, f"store unavailable: {type(exc).__name__}")
        return jsonify({"incidents": len(items), **result.as_dict()}), 200

    @bp.get("/api/gates/<service_name>")
    def gate(service_name: str) -> tuple[Response, int]:
        at = utcnow()
        if request.args.get("at"):
            try:
                at = parse_time(request.args["at"], field="at")
            except InvalidItem as exc:
                return _error(400, str(exc))
        try:
            body, status = _gate_body(ctx, service_name, at)
        except SloConfigError as exc:
            return _error(500, "invalid SLO definitions", problems=exc.problems)
        except Exception as exc:
            log.exception("error-budget gate for %s failed", service_name)
            return _error(503, f"store unavailable: {type(exc).__name__}")
        return jsonify(body), status

    @bp.post("/api/evidence/packs/<pack_id>/link")
    def link(pack_id: str) -> tuple[Response, int]:
        user = service.current_user(ctx)
        if user is None:
            return _error(401, "sign in to download evidence")
        try:
            with ctx.session() as session:
                known = service.get_pack(session, pack_id) is not None
        except Exception as exc:
            log.exception("reading evidence pack %s failed", pack_id)
            return _error(503, f"store unavailable: {type(exc).__name__}")
        if not known:
            return _error(404, f"no evidence pack {pack_id!r}")
        url, exp = service.signed_download_url(ctx, pack_id, user=user)
        return jsonify({"url": url, "expires_at": _iso(datetime.fromtimestamp(exp, UTC))}), 200

    def _record(**fields: Any) -> None:
        # Recording must never turn an answer into a 5xx: log and answer anyway.
        try:
            with ctx.session() as session:
                service.record_download(session, **fields)
        except Exception:
            log.exception("recording download of %s failed", fields.get("pack_id"))

    @bp.get("/evidence/packs/<pack_id>/download")
    def download(pack_id: str) -> Response | tuple[Response, int]:
        now = utcnow()
        event_id = f"dl-{uuid.uuid4().hex}"
        scope = service.DOWNLOAD_SCOPE + pack_id
        base: dict[str, Any] = {"event_id": event_id, "pack_id": pack_id, "at": now, "size": 0}
        token = request.args.get("token", "")
        if not token:
            _record(
                **base,
                export_id=None,
                user=None,
                status=401,
                token_state=service.STATE_MISSING,
                scope=None,
                watermarked=False,
            )
            return _error(401, "missing token: ask the console for a signed download URL")
        try:
            claims = verify_token(
                service.token_secret(ctx), token, scope=scope, now=now.timestamp()
            )
        except TokenError as exc:
            state = service.STATE_EXPIRED if str(exc) == "expired" else service.STATE_INVALID
            _record(
                **base,
                export_id=None,
                user=None,
                status=403,
                token_state=state,
                scope=None,
                watermarked=False,
            )
            return _error(403, f"token refused: {exc}")
        decision = downloads.hit(claims.sub)
        if not decision.allowed:
            _record(
                **base,
                export_id=None,
                user=claims.sub,
                status=429,
                token_state=service.STATE_VALID,
                scope=claims.scope,
                watermarked=False,
            )
            response, status = _error(
                429,
                f"download limit of {decision.limit} per {cfg.rate_window_s} s reached",
                retry_after_s=decision.retry_after_s,
            )
            response.headers["Retry-After"] = str(decision.retry_after_s)
            return response, status
        export_id = f"{pack_id}.{claims.jti or event_id[3:15]}"
        try:
            with ctx.session() as session:
                pack = service.get_pack(session, pack_id)
            if pack is None:
                return _error(404, f"no evidence pack {pack_id!r}")
            data = service.render_download(ctx, pack, export_id=export_id, user=claims.sub, at=now)
        except EvidenceError as exc:
            return _error(409, str(exc))
        except SigningKeyError as exc:
            return _error(503, str(exc))
        except Exception as exc:
            log.exception("rendering evidence pack %s failed", pack_id)
            return _error(503, f"store unavailable: {type(exc).__name__}")
        _record(
            **(base | {"size": len(data)}),
            export_id=export_id,
            user=claims.sub,
            status=200,
            token_state=service.STATE_VALID,
            scope=claims.scope,
            watermarked=True,
        )
        response = Response(data, mimetype="application/zip")
        response.headers["Content-Disposition"] = f'attachment; filename="{export_id}.zip"'
        response.headers["X-Export-User"] = claims.sub
        response.headers["X-Export-Id"] = export_id
        response.headers["X-Export-Timestamp"] = _iso(now)
        response.headers["X-RateLimit-Remaining"] = str(decision.remaining)
        response.headers["Cache-Control"] = "no-store"
        return response

    return bp
