"""Every request's identity (`flask.g.identity`), the sign-in page, and the Origin check.

Registered as a blueprint whose `before_app_request` runs for the whole app (pages, Dash
callbacks, APIs). State-changing requests must carry an Origin (or Referer) of the console's own
origin, which stops cross-site form posts and forged callback requests riding a session cookie;
requests with an `Authorization` header (receivers' bearer tokens, never sent by browsers on their
own) and `/ingest/*` are exempt.
"""

from __future__ import annotations

import html
import logging
from urllib.parse import urlsplit

from flask import Blueprint, Response, g, jsonify, redirect, request

from console.auth.users import (
    authenticate,
    end_session,
    header_identity,
    session_identity,
    start_session,
)
from console.context import AppContext

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


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin() -> bool:
    """Whether the request's Origin (or, failing that, Referer) is the console's own origin."""
    own = _origin(request.host_url)
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


def make_blueprint(ctx: AppContext) -> Blueprint:
    """Build the auth blueprint over ``ctx``'s settings and store."""
    bp = Blueprint("quarterdeck_auth", __name__)
    settings = ctx.settings.auth

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
            and "Authorization" not in request.headers
            and not same_origin()
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
        return None

    @bp.get("/sign-in")
    def sign_in_form() -> Response:
        if settings.mode == "header":
            return Response("signed in by the auth proxy", status=404)
        return Response(_page(next_url=_safe_next(request.args.get("next"))), mimetype="text/html")

    @bp.post("/sign-in")
    def sign_in() -> Response:
        if settings.mode == "header":
            return Response("signed in by the auth proxy", status=404)
        username = request.form.get("username", "")
        next_url = _safe_next(request.form.get("next"))
        with ctx.session() as session:
            identity = authenticate(session, username, request.form.get("password", ""))
            if identity is None:
                log.warning("failed sign-in for %r from %s", username[:200], request.remote_addr)
                return Response(
                    _page("Unknown user or wrong password.", next_url),
                    status=401,
                    mimetype="text/html",
                )
            token = start_session(session, identity, hours=settings.session_hours)
        response = redirect(next_url)
        secure = request.is_secure if settings.cookie_secure is None else settings.cookie_secure
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(settings.session_hours * 3600),
            httponly=True,
            secure=secure,
            samesite="Lax",
            path="/",
        )
        return response  # type: ignore[return-value]

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
