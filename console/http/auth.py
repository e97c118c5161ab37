"""Every request's identity (`flask.g.identity`), the sign-in page, the Origin check and the
permission gate.

Registered as a blueprint whose `before_app_request` runs for the whole app (pages, Dash
callbacks, APIs), in this order:

1. **Identity**: the session cookie (local mode) or the trusted proxy's headers (header mode),
   as one canonical user key.
2. **CSRF**: a state-changing request must carry an Origin (or Referer) of the console's own
   origin (as the trusted proxy forwards it), which stops cross-site form posts and forged
   callback requests riding ambient credentials (a cookie, a Basic-auth header the browser
   adds). The only exemptions: API clients presenting `Authorization: Bearer …` with no
   cookie at all (a browser never adds a bearer token on its own) and the machine receivers
   under `/ingest/*`, which never read the session and check their own tokens or signatures.
3. **Permissions**: every HTTP endpoint and Dash callback of the permission table
   (`console.auth.permissions`) is refused 401/403 before its handler runs; refusals of a
   signed-in user are written to the hash-chained audit.

Sign-in is throttled per account and per client address (`console.auth.throttle`): 429 with
`Retry-After`, every attempt audited, the same answers for unknown users as for known ones.
"""

from __future__ import annotations

import hashlib
import html
import logging
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, g, jsonify, redirect, request

from console.auth.identity import Identity, user_key
from console.auth.permissions import (
    ANONYMOUS,
    HTTP_PERMISSIONS,
    Refusal,
    authorize,
    dash_permissions,
)
from console.auth.throttle import Policy, SignInThrottle, make_throttle
from console.auth.users import (
    authenticate,
    client_address,
    end_session,
    find_user,
    header_identity,
    is_trusted_proxy,
    session_identity,
    start_session,
)
from console.context import AppContext
from console.http.receivers import loads_bounded
from console.settings.actions import AuthSettings
from store.audit import append_audit

log = logging.getLogger(__name__)

COOKIE = "qd_session"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PUBLIC_PREFIXES = (
    "/sign-in",
    "/sign-out",
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/gates/",  # CI asks before deploying; the answer is a policy state, no secrets
    "/ingest/",
    "/bundles/",
    "/evidence/packs/",  # downloads carry their own signed, expiring token
    "/assets/",
    "/_dash-component-suites/",
    "/_favicon.ico",
    "/favicon.ico",
)
ORIGIN_EXEMPT_PREFIXES = ("/ingest/",)
THROTTLE_EXTENSION = "quarterdeck.signin_throttle"
DASH_UPDATE = "/_dash-update-component"
MAX_DASH_DEPTH = 500


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _via_trusted_proxy(settings: AuthSettings) -> bool:
    return is_trusted_proxy(request.remote_addr, settings.trusted_proxies)


def _forwarded(name: str, settings: AuthSettings) -> str | None:
    """The first value of a trusted proxy's `X-Forwarded-*` header (None from anyone else)."""
    value = request.headers.get(name)
    if not value or not _via_trusted_proxy(settings):
        return None
    return value.split(",")[0].strip() or None


def is_https(settings: AuthSettings) -> bool:
    """Whether the browser's connection is HTTPS: directly, or as the trusted proxy says."""
    proto = _forwarded("X-Forwarded-Proto", settings)
    return request.is_secure or (proto or "").lower() == "https"


def own_origin(settings: AuthSettings) -> str:
    """The console's origin as the browser sees it (scheme and host through the trusted proxy)."""
    scheme = "https" if is_https(settings) else request.scheme
    host = _forwarded("X-Forwarded-Host", settings) or request.host
    return f"{scheme}://{host}".lower()


def bearer_only() -> bool:
    """A bearer-token API client with no cookie: the one request kind exempt from the check."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip()) and "Cookie" not in request.headers


def same_origin(settings: AuthSettings | None = None) -> bool:
    """Whether the request's Origin (or, failing that, Referer) is the console's own origin."""
    own = own_origin(settings) if settings is not None else _origin(request.host_url)
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        return _origin(origin) == own
    referer = request.headers.get("Referer")
    return referer is not None and _origin(referer) == own


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/") and not value.startswith("//"):
        return value
    return "/"


def _page(message: str = "", next_url: str = "/") -> str:
    note = f'<p class="qd-error" role="alert">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Quarterdeck — Sign in</title>
<link rel="stylesheet" href="/assets/quarterdeck.css"></head>
<body><main class="qd-main qd-page qd-page--sign-in">
<h1 class="qd-title">Sign in to Quarterdeck</h1>{note}
<form method="post" action="/sign-in" class="qd-section">
<input type="hidden" name="next" value="{html.escape(next_url)}">
<p><label>User <input name="username" id="sign-in-user" autocomplete="username"
 required></label></p>
<p><label>Password <input name="password" id="sign-in-password" type="password"
 autocomplete="current-password" required></label></p>
<p><button type="submit" id="sign-in-submit">Sign in</button></p>
</form></main></body></html>"""


def _callback_map() -> dict[str, object]:
    """The serving Dash app's callbacks (the gate finds a callback as Dash does, by output)."""
    import dash

    try:
        callbacks: dict[str, object] = dash.get_app().callback_map
    except Exception:  # no Dash app: the gate fails closed on outputs alone
        return {}
    return callbacks


def _account_label(session: object, key: str) -> str:
    """The audit actor of a sign-in attempt: the user key, or a digest for a name that is no
    user (people type passwords into the user field; those never reach the audit)."""
    if key and find_user(session, key) is not None:  # type: ignore[arg-type]
        return key
    return "unknown-user:" + hashlib.sha256(key.encode()).hexdigest()[:12]


def throttle_of(app: Flask) -> SignInThrottle:
    """The app's sign-in throttle (tests set its ``clock``)."""
    throttle: SignInThrottle = app.extensions[THROTTLE_EXTENSION]
    return throttle


def make_blueprint(ctx: AppContext, *, throttle: SignInThrottle | None = None) -> Blueprint:
    """Build the auth blueprint over ``ctx``'s settings and store.

    ``throttle`` overrides the sign-in throttle built from settings (Redis when `redis_url` is
    set); it is kept in `app.extensions` so tests can reach its clock.
    """
    bp = Blueprint("quarterdeck_auth", __name__)
    settings = ctx.settings.auth
    guard = throttle or make_throttle(
        redis_url=ctx.settings.redis_url,
        policy=Policy(
            account_free=settings.signin_account_free,
            address_free=settings.signin_address_free,
            base_s=settings.signin_backoff_s,
            max_s=settings.signin_backoff_max_s,
            forget_s=settings.signin_forget_s,
        ),
        prefix=settings.signin_redis_prefix,
    )
    bp.record_once(lambda state: state.app.extensions.setdefault(THROTTLE_EXTENSION, guard))

    def audit(actor: str, action: str, target: str, outcome: str, **detail: object) -> None:
        # The audit must never turn an answer into a 5xx: log and answer anyway.
        try:
            with ctx.session() as session:
                append_audit(
                    session,
                    actor=actor,
                    action=action,
                    target=target,
                    environment=None,
                    outcome=outcome,
                    detail=detail,
                )
        except Exception:
            log.exception("auditing %s %s for %s failed", action, outcome, actor)

    def refuse(refusal: Refusal, target: str) -> tuple[Response, int]:
        identity: Identity | None = g.identity
        log.warning(
            "refused %s %s (%s) for %s",
            request.method,
            request.path,
            refusal.permission,
            identity.user if identity else ANONYMOUS,
        )
        if identity is not None:  # anonymous refusals are logged, not audited (no flood)
            audit(
                identity.user,
                refusal.permission,
                target,
                "refused",
                message=refusal.message,
                path=request.path,
                roles=sorted(identity.roles),
            )
        return jsonify({"error": refusal.message, "permission": refusal.permission}), (
            refusal.status
        )

    def gate() -> tuple[Response, int] | None:
        """Refuse a request the permission table does not allow (None: let it through)."""
        endpoint = request.endpoint or ""
        if endpoint in HTTP_PERMISSIONS:
            permissions, target = {HTTP_PERMISSIONS[endpoint]}, request.path
        elif request.method == "POST" and request.path.endswith(DASH_UPDATE):
            try:
                body = loads_bounded(request.get_data(cache=True), max_depth=MAX_DASH_DEPTH)
            except (ValueError, UnicodeDecodeError) as exc:
                return jsonify({"error": f"callback body: {exc}"}), 400
            permissions = dash_permissions(body, _callback_map())
            target = str(body.get("output", "")) if isinstance(body, dict) else ""
        else:
            return None
        for permission in sorted(permissions):
            refusal = authorize(g.identity, permission)
            if refusal is not None:
                return refuse(refusal, target)
        return None

    @bp.before_app_request
    def identify() -> Response | tuple[Response, int] | None:
        path = request.path
        g.identity = None
        if settings.mode == "header":
            g.identity = header_identity(request.headers, request.remote_addr, settings)
            if g.identity is None and request.headers.get(settings.user_header):
                log.warning(
                    "ignored %s from untrusted %s", settings.user_header, request.remote_addr
                )
        else:
            token = request.cookies.get(COOKIE)
            if token:
                with ctx.session() as session:
                    g.identity = session_identity(session, token)
        if (
            request.method in UNSAFE_METHODS
            and not path.startswith(ORIGIN_EXEMPT_PREFIXES)
            and not bearer_only()
            and not same_origin(settings)
        ):
            log.warning("refused cross-origin %s %s", request.method, path)
            return jsonify({"error": "cross-origin request refused"}), 403
        if g.identity is None and not settings.allow_anonymous_read:
            if path.startswith(PUBLIC_PREFIXES):
                return None
            if request.method == "GET" and not path.startswith(("/_dash", "/api/")):
                target = redirect(f"/sign-in?next={path}")
                return target  # type: ignore[return-value]
            return jsonify({"error": "sign in first"}), 401
        return gate()

    @bp.get("/sign-in")
    def sign_in_form() -> Response:
        if settings.mode == "header":
            return Response("signed in by the auth proxy", status=404)
        return Response(_page(next_url=_safe_next(request.args.get("next"))), mimetype="text/html")

    @bp.post("/sign-in")
    def sign_in() -> Response:
        if settings.mode == "header":
            return Response("signed in by the auth proxy", status=404)
        key = user_key(request.form.get("username", ""))[:200]
        next_url = _safe_next(request.form.get("next"))
        address = client_address(
            request.remote_addr, request.headers.get("X-Forwarded-For"), settings.trusted_proxies
        )
        wait = guard.retry_after(key, address)
        if wait:
            with ctx.session() as session:
                label = _account_label(session, key)
            audit(label, "sign-in", address, "throttled", retry_after_s=wait)
            response = Response(
                _page(f"Too many failed sign-ins: try again in {wait} s.", next_url),
                status=429,
                mimetype="text/html",
            )
            response.headers["Retry-After"] = str(wait)
            return response
        with ctx.session() as session:
            identity = authenticate(session, key, request.form.get("password", ""))
            if identity is None:
                label = _account_label(session, key)
            else:
                token = start_session(session, identity, hours=settings.session_hours)
        if identity is None:
            verdict = guard.failed(key, address)
            log.warning("failed sign-in for %s from %s", label, address)
            audit(
                label,
                "sign-in",
                address,
                "refused",
                failures=verdict.failures,
                locked_s=verdict.retry_after_s,
            )
            return Response(
                _page("Unknown user or wrong password.", next_url),
                status=401,
                mimetype="text/html",
            )
        guard.succeeded(key)
        audit(identity.user, "sign-in", address, "signed-in")
        signed_in = redirect(next_url)
        secure = is_https(settings) if settings.cookie_secure is None else settings.cookie_secure
        signed_in.set_cookie(
            COOKIE,
            token,
            max_age=int(settings.session_hours * 3600),
            httponly=True,
            secure=secure,
            samesite="Lax",
            path="/",
        )
        return signed_in  # type: ignore[return-value]

    @bp.post("/sign-out")
    def sign_out() -> Response:
        token = request.cookies.get(COOKIE)
        if token:
            with ctx.session() as session:
                end_session(session, token)
        response = redirect("/sign-in")
        response.delete_cookie(COOKIE, path="/")
        return response  # type: ignore[return-value]

    return bp
