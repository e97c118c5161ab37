"""Egress HTTP: `POST /ingest/exports`, evidence downloads through short-lived signed URLs.
(`POST /ingest/incidents` and `GET /api/gates/<service>` live in `console/http/reliability.py`.)

- `/ingest/exports` (bearer token) takes JSON lines; one bad line refuses the whole request with
  400 naming every bad line and field, and stores nothing. It is thin: credential check,
  bounded read, one collector call (`receive_*`), counts out; an item the store cannot hold is
  dead-lettered by the collector and the rest stored.
- `/evidence/packs/<id>/download?token=…` checks the HMAC token (`sub`, `scope`, `exp` ≤ 10 min),
  limits downloads per user and per tenant (429 + `Retry-After`, never 5xx), renders the pack
  watermarked for this download, answers with `X-Export-User/-Id/-Timestamp`,
  `X-Export-Token-State` and `X-Request-ID`, and records every attempt as one export event keyed
  on the proxy's `X-Request-ID` (so the proxy's log line merges into it, never beside it).
- `GET /api/egress/summary?from=…&to=…` (ISO-8601 UTC; default the last 24 h): the figures the
  Egress page and the goals show (`store.queries.egress.egress_summary`).
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, jsonify, request

from collectors import exports
from collectors.base import InvalidItem, parse_time
from console import evidence_service as service
from console.context import AppContext
from console.http.receivers import BodyTooLarge, bearer_refusal, demo_secret, read_body
from console.http.receivers import error as _error
from console.settings.ingest import DEMO_EXPORTS_TOKEN
from egress.limiter import DownloadLimits, RateLimiter, make_limiter
from egress.tokens import TokenError, verify_token
from evidence.pack import EvidenceError
from evidence.signing import SigningKeyError
from store.ingest import IngestResult, utcnow
from store.measures import Window
from store.queries.egress import egress_summary

log = logging.getLogger(__name__)

MAX_EXPORT_BYTES = 10 * 1024 * 1024
EXPORTS_SETTING = "QUARTERDECK_INGEST__EXPORTS_TOKEN"


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


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,100}$")
_TENANT = re.compile(r"^[A-Za-z0-9._@-]{1,200}$")


def request_id() -> str:
    """The proxy's request id (`X-Request-ID`, NGINX `$request_id`), else one of our own."""
    given = request.headers.get("X-Request-ID", "")
    return given if _REQUEST_ID.match(given) else f"qd-{uuid.uuid4().hex}"


def request_tenant(claimed: str | None, default: str) -> str:
    """The download's tenant: the token's `ten` claim, else the proxy's `X-Tenant`, else default."""
    if claimed:
        return claimed[:200]
    given = request.headers.get("X-Tenant", "")
    return given if _TENANT.match(given) else default


def download_limits(
    ctx: AppContext, *, limiter: RateLimiter | None, tenant_limiter: RateLimiter | None
) -> DownloadLimits:
    """Per-user and per-tenant limits from settings (Redis when set); either may be given."""
    cfg = service.config(ctx)
    user = limiter or make_limiter(
        limit=cfg.rate_limit,
        window_s=cfg.rate_window_s,
        redis_url=cfg.redis_url,
        prefix=cfg.rate_key_prefix,
    )
    tenant = tenant_limiter or make_limiter(
        limit=cfg.tenant_rate_limit,
        window_s=cfg.tenant_rate_window_s,
        redis_url=cfg.redis_url,
        prefix=f"{cfg.rate_key_prefix}tenant:",
    )
    return DownloadLimits(
        user, tenant, user_window_s=cfg.rate_window_s, tenant_window_s=cfg.tenant_rate_window_s
    )


def summary_window(args: Any, now: datetime) -> Window:
    """`from`/`to` (ISO-8601 UTC) of `/api/egress/summary`; default the last 24 h."""
    end = parse_time(args["to"], field="to") if args.get("to") else now
    start = parse_time(args["from"], field="from") if args.get("from") else end - timedelta(days=1)
    if start >= end:
        raise InvalidItem("from: must be before to")
    return Window(start, end)


def make_blueprint(
    ctx: AppContext,
    *,
    limiter: RateLimiter | None = None,
    tenant_limiter: RateLimiter | None = None,
) -> Blueprint:
    """Build the egress blueprint; ``limiter``/``tenant_limiter`` override the settings' ones."""
    bp = Blueprint("egress", __name__)
    cfg = service.config(ctx)
    limits = download_limits(ctx, limiter=limiter, tenant_limiter=tenant_limiter)
    if exports_token(ctx) == DEMO_EXPORTS_TOKEN:
        log.warning("demo mode: /ingest/exports bearer token is %r", DEMO_EXPORTS_TOKEN)

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

    def _record(row: dict[str, Any]) -> None:
        # Recording must never turn an answer into a 5xx: log and answer anyway. A request id
        # already taken (a client-chosen X-Request-ID) must not lose the attempt: own id then.
        try:
            with ctx.session() as session:
                if not exports.record_app_event(session, row):
                    exports.record_app_event(session, row | {"event_id": f"qd-{uuid.uuid4().hex}"})
        except Exception:
            log.exception("recording download %s failed", row.get("route"))

    @bp.get("/api/egress/summary")
    def summary() -> tuple[Response, int]:
        try:
            window = summary_window(request.args, utcnow())
        except InvalidItem as exc:
            return _error(400, str(exc))
        try:
            with ctx.session() as session:
                figures = egress_summary(session, window=window, routes=cfg.export_routes)
        except Exception as exc:
            log.exception("egress summary failed")
            return _error(503, f"store unavailable: {type(exc).__name__}")
        body = {
            "from": _iso(window.start),
            "to": _iso(window.end),
            **figures.as_dict(),
            "declared_routes": list(cfg.export_routes),
            "limits": {
                "user": {"limit": cfg.rate_limit, "window_s": cfg.rate_window_s},
                "tenant": {"limit": cfg.tenant_rate_limit, "window_s": cfg.tenant_rate_window_s},
            },
        }
        return jsonify(body), 200

    @bp.get("/evidence/packs/<pack_id>/download")
    def download(pack_id: str) -> Response | tuple[Response, int]:
        now = utcnow()
        event_id = request_id()
        scope = service.DOWNLOAD_SCOPE + pack_id
        route = f"/evidence/packs/{pack_id}/download"[:500]

        def row(status: int, state: str, reason: str | None, **more: Any) -> dict[str, Any]:
            return {
                "event_id": event_id,
                "export_id": None,
                "ts": now,
                "user": None,
                "tenant": request_tenant(None, cfg.default_tenant),
                "route": route,
                "status": status,
                "bytes": 0,
                "token_state": state,
                "token_scope": None,
                "watermarked": False,
                "answered_by": "application",
                "reason": reason,
            } | more

        def answer(response: Response, status: int, event: dict[str, Any]) -> tuple[Response, int]:
            # The event keeps the bytes sent, as the proxy logs them ($body_bytes_sent).
            _record(event | {"bytes": len(response.get_data())})
            response.headers["X-Request-ID"] = event_id
            response.headers["X-Export-Token-State"] = str(event["token_state"])
            return response, status

        token = request.args.get("token", "")
        if not token:
            return answer(
                *_error(401, "missing token: ask the console for a signed download URL"),
                row(401, service.STATE_MISSING, "missing_token"),
            )
        try:
            claims = verify_token(
                service.token_secret(ctx), token, scope=scope, now=now.timestamp()
            )
        except TokenError as exc:
            state = service.STATE_EXPIRED if str(exc) == "expired" else service.STATE_INVALID
            return answer(*_error(403, f"token refused: {exc}"), row(403, state, f"{state}_token"))
        tenant = request_tenant(claims.tenant, cfg.default_tenant)
        mine = {"user": claims.sub, "tenant": tenant, "token_scope": claims.scope}
        verdict = limits.check(user=claims.sub, tenant=tenant)
        if not verdict.allowed:
            decision = verdict.decision
            who = "user" if verdict.refused_by == "user" else f"tenant {tenant!r}"
            response, status = _error(
                429,
                f"download limit of {decision.limit} per {verdict.window_s} s for this {who} "
                "reached",
                retry_after_s=decision.retry_after_s,
                limit=verdict.refused_by,
            )
            response.headers["Retry-After"] = str(decision.retry_after_s)
            return answer(
                response,
                status,
                row(429, service.STATE_VALID, f"rate_limited_{verdict.refused_by}", **mine),
            )
        decision = verdict.decision
        export_id = f"{pack_id}.{claims.jti or event_id[-12:]}"
        try:
            with ctx.session() as session:
                pack = service.get_pack(session, pack_id)
            if pack is None:
                return answer(
                    *_error(404, f"no evidence pack {pack_id!r}"),
                    row(404, service.STATE_VALID, "not_found", **mine),
                )
            data = service.render_download(ctx, pack, export_id=export_id, user=claims.sub, at=now)
        except EvidenceError as exc:
            return answer(*_error(409, str(exc)), row(409, service.STATE_VALID, "conflict", **mine))
        except SigningKeyError as exc:
            return answer(*_error(503, str(exc)), row(503, service.STATE_VALID, None, **mine))
        except Exception as exc:
            log.exception("rendering evidence pack %s failed", pack_id)
            return answer(
                *_error(503, f"store unavailable: {type(exc).__name__}"),
                row(503, service.STATE_VALID, None, **mine),
            )
        # The watermark is in every file (render_download) and in the headers below.
        _record(
            row(
                200,
                service.STATE_VALID,
                None,
                **mine,
                export_id=export_id,
                bytes=len(data),
                watermarked=True,
            )
        )
        response = Response(data, mimetype="application/zip")
        response.headers["Content-Disposition"] = f'attachment; filename="{export_id}.zip"'
        response.headers["X-Export-User"] = claims.sub
        response.headers["X-Export-Id"] = export_id
        response.headers["X-Export-Timestamp"] = _iso(now)
        response.headers["X-RateLimit-Remaining"] = str(decision.remaining)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Request-ID"] = event_id
        response.headers["X-Export-Token-State"] = service.STATE_VALID
        return response

    return bp
