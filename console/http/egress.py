"""Egress and error-budget HTTP: `POST /ingest/exports`, `POST /ingest/incidents`,
`GET /api/gates/<service>`, evidence downloads through short-lived signed URLs.

- `/ingest/exports` (bearer token) takes JSON lines; one bad line refuses the whole request with
  400 naming every bad line and field, and stores nothing. `/ingest/incidents` (bearer token)
  takes one incident object or a list the same way (a later report updates resolution).
  Both are thin: credential check, bounded read, one collector call (`receive_*`), counts out;
  an item the store cannot hold is dead-lettered by the collector and the rest stored.
- `/api/gates/<service>` answers 200 `{"state": "normal"}` or 423 `{"state": "freeze", "reason"}`
  from the error-budget policy, so CI can ask before deploying (`?at=` evaluates another instant).
- `/evidence/packs/<id>/download?token=…` checks the HMAC token (`sub`, `scope`, `exp` ≤ 10 min),
  limits downloads per user (429 + `Retry-After`, never 5xx), renders the pack watermarked for
  this download, answers with `X-Export-User/-Id/-Timestamp`, and records every attempt as an
  export event.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from collectors import exports, incidents
from collectors.base import InvalidItem, parse_time
from console import evidence_service as service
from console.context import AppContext
from console.http.receivers import BodyTooLarge, bearer_refusal, demo_secret, read_body
from console.http.receivers import error as _error
from console.settings.ingest import DEMO_EXPORTS_TOKEN, DEMO_INCIDENTS_TOKEN
from egress.limiter import RateLimiter, make_limiter
from egress.tokens import TokenError, verify_token
from evidence.pack import EvidenceError
from evidence.signing import SigningKeyError
from store.ingest import IngestResult, utcnow
from store.queries.reliability import policy_state
from store.slo import BURN_WINDOWS, SloConfigError, format_duration

log = logging.getLogger(__name__)

MAX_EXPORT_BYTES = 10 * 1024 * 1024
MAX_INCIDENT_BYTES = 10 * 1024 * 1024
MAX_INCIDENTS = incidents.MAX_INCIDENTS
EXPORTS_SETTING = "QUARTERDECK_INGEST__EXPORTS_TOKEN"
INCIDENTS_SETTING = "QUARTERDECK_INGEST__INCIDENTS_TOKEN"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def exports_token(ctx: AppContext) -> str | None:
    """The `/ingest/exports` bearer token (the demo token in demo mode when none is set)."""
    cfg = service.config(ctx)
    return demo_secret(
        cfg.ingest_token,
        demo_mode=cfg.demo_mode,
        demo_value=DEMO_EXPORTS_TOKEN,
        setting=EXPORTS_SETTING,
    )


def incidents_token(ctx: AppContext) -> str | None:
    """The `/ingest/incidents` bearer token (the demo token in demo mode when none is set)."""
    cfg = service.config(ctx)
    return demo_secret(
        cfg.incidents_token,
        demo_mode=cfg.demo_mode,
        demo_value=DEMO_INCIDENTS_TOKEN,
        setting=INCIDENTS_SETTING,
    )


def _receive(
    ctx: AppContext, source: str, token: str | None, setting: str, limit: int, store: Any
) -> tuple[Response, int]:
    """Credential → bounded read → one collector call → counts (400 refused, 503 store down)."""
    refused = bearer_refusal(token, setting=setting, path=request.path)
    if refused:
        return refused
    try:
        body = read_body(limit)
        with ctx.session() as session:
            result: IngestResult = store(session, body)
    except BodyTooLarge as exc:
        return _error(413, str(exc))
    except Exception as exc:
        log.exception("storing %s failed", source)
        return _error(503, f"store unavailable: {type(exc).__name__}")
    if result.refused:
        return _error(400, result.refused, problems=result.reasons)
    return jsonify(result.as_dict() | {"rejects": result.reasons[:100]}), 200


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
    if exports_token(ctx) == DEMO_EXPORTS_TOKEN:
        log.warning("demo mode: /ingest/exports bearer token is %r", DEMO_EXPORTS_TOKEN)
    if incidents_token(ctx) == DEMO_INCIDENTS_TOKEN:
        log.warning("demo mode: /ingest/incidents bearer token is %r", DEMO_INCIDENTS_TOKEN)

    @bp.post("/ingest/exports")
    def ingest_exports() -> tuple[Response, int]:
        def store(session: Any, body: bytes) -> IngestResult:
            result = exports.receive_export_lines(session, body, received_at=utcnow())
            return result

        response, status = _receive(
            ctx, exports.SOURCE, exports_token(ctx), EXPORTS_SETTING, MAX_EXPORT_BYTES, store
        )
        if status == 200:
            counts = response.get_json()
            lines = counts["stored"] + counts["duplicates"] + counts["rejected"]
            response = jsonify({"lines": lines, **counts})
        return response, status

    @bp.post("/ingest/incidents")
    def ingest_incidents() -> tuple[Response, int]:
        return _receive(
            ctx,
            incidents.SOURCE,
            incidents_token(ctx),
            INCIDENTS_SETTING,
            MAX_INCIDENT_BYTES,
            lambda session, body: incidents.receive_incidents(session, body, received_at=utcnow()),
        )

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
        # The auth gate refused anonymous (401) and role-less (403) callers already; again here.
        user, refused = service.authorized_user("evidence.link")
        if user is None:
            return _error(401 if service.current_user(ctx) is None else 403, refused)
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
