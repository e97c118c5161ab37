"""`GET /bundles/<name>`: the OPA bundle revision pinned for the caller's environment.

`?revision=` asks for a named revision instead (the Kubernetes provider pins that way).
OPA authenticates with `credentials.bearer`; each environment has its own token, and the token
decides which environment's pin is served. The ETag is the tarball's SHA-256, so OPA's
`If-None-Match` polls cost a 304. A tarball whose bytes no longer match the registry's SHA-256
is refused rather than served (OPA then keeps its active bundle and reports the failure).
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select

from console.context import AppContext
from console.settings import Settings
from console.wiring import load_bundle
from store.models import BundlePin, BundleRevision

log = logging.getLogger(__name__)

OPA_BUNDLE_TYPE = "application/gzip"


def environment_for_token(settings: Settings, header: str | None) -> str | None:
    """Return the environment whose bundle token is presented (constant-time compare)."""
    if not header or not header.startswith("Bearer "):
        return None
    presented = header.removeprefix("Bearer ").strip().encode()
    found = None
    for env, token in settings.actions.bundle_tokens.items():
        if hmac.compare_digest(presented, token.get_secret_value().encode()):
            found = env
    return found


def make_blueprint(ctx: AppContext) -> Blueprint:
    """Build the bundle endpoint over ``ctx``."""
    bp = Blueprint("quarterdeck_bundles", __name__)

    @bp.get("/bundles/<name>")
    def serve_bundle(name: str) -> Response | tuple[Response, int]:
        env = environment_for_token(ctx.settings, request.headers.get("Authorization"))
        if env is None:
            return jsonify({"error": "unknown or missing bearer token"}), 401
        with ctx.session() as session:
            pin = session.scalar(
                select(BundlePin)
                .where(BundlePin.bundle == name, BundlePin.environment == env)
                .order_by(BundlePin.pinned_at.desc(), BundlePin.id.desc())
                .limit(1)
            )
            # A Kubernetes-pinned OPA asks for its revision in the resource (`?revision=`).
            wanted = request.args.get("revision") or (pin.revision if pin else None)
            if wanted is None:
                return jsonify({"error": f"no revision of {name} is pinned for {env}"}), 404
            revision = session.scalar(
                select(BundleRevision).where(
                    BundleRevision.bundle == name, BundleRevision.revision == wanted
                )
            )
        if revision is None:
            return jsonify({"error": f"revision {wanted} of {name} is not registered"}), 404
        if revision.signature_status == "invalid":
            return jsonify({"error": f"{name} {wanted}: signature invalid, not served"}), 409
        etag = f'"{revision.sha256}"'
        if request.headers.get("If-None-Match") == etag:
            return Response(status=304, headers={"ETag": etag})
        data = load_bundle(ctx.settings, revision)
        if data is None:
            return jsonify({"error": f"tarball of {name} {wanted} not found"}), 404
        if hashlib.sha256(data).hexdigest() != revision.sha256:
            log.error("bundle %s %s does not match its registered sha256", name, wanted)
            return jsonify({"error": f"{name} {wanted} does not match the registry"}), 409
        return Response(data, mimetype=OPA_BUNDLE_TYPE, headers={"ETag": etag})

    return bp
