"""`GET /bundles/<name>`: the OPA bundle revision pinned for the caller's environment.

`?revision=` asks for a named revision instead (the Kubernetes provider pins that way).
OPA authenticates with `credentials.bearer`; each environment has its own token
(`QUARTERDECK_ACTIONS__BUNDLE_TOKENS`, in demo mode the documented `DEMO_BUNDLE_TOKENS`), and the
token decides which environment's pin is served.

A registered revision is served exactly as stored: the bytes are read (or, for the demo, built
deterministically) once, checked against the registry's SHA-256 and kept in memory, so a poll
never rebuilds a tarball. The ETag is that SHA-256; OPA sends it back in `If-None-Match` and
gets a 304. Bytes that no longer match the registry are refused (409) rather than served (OPA
then keeps its active bundle and reports the failure).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict

from flask import Blueprint, Response, request

from console.context import AppContext
from console.http.receivers import bearer_matches, error
from console.settings import Settings
from console.settings.opa import DEMO_BUNDLE_TOKENS
from console.wiring import load_bundle
from store.models import BundleRevision
from store.queries.actions import pinned_revision

log = logging.getLogger(__name__)

OPA_BUNDLE_TYPE = "application/gzip"
CACHE_ENTRIES = 32
CACHE_BYTES = 256 * 1024 * 1024


def bundle_tokens(settings: Settings) -> dict[str, str]:
    """environment → bearer token in force (demo mode without tokens: the demo's)."""
    tokens = {env: t.get_secret_value() for env, t in settings.actions.bundle_tokens.items()}
    if not tokens and settings.demo_mode:
        return dict(DEMO_BUNDLE_TOKENS)
    return {env: token for env, token in tokens.items() if token}


def environment_for_token(settings: Settings, header: str | None) -> str | None:
    """Return the environment whose bundle token is presented (constant-time compare)."""
    found = None
    for env, token in bundle_tokens(settings).items():
        if bearer_matches(token, header):
            found = env
    return found


def etag_matches(header: str | None, etag: str) -> bool:
    """RFC 9110 `If-None-Match`: `*`, or a list of (weak or strong) tags containing ours."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return etag in tags


class VerifiedBytes:
    """Registered tarballs by SHA-256, read once and checked, kept in memory (bounded LRU)."""

    def __init__(self, entries: int = CACHE_ENTRIES, max_bytes: int = CACHE_BYTES) -> None:
        self.entries, self.max_bytes = entries, max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # how many times bytes were read/built (tests: once per revision)

    def get(self, settings: Settings, revision: BundleRevision) -> bytes | None:
        """The revision's bytes when they hash to its registered SHA-256, else None."""
        with self._lock:
            if revision.sha256 in self._items:
                self._items.move_to_end(revision.sha256)
                return self._items[revision.sha256]
        data = load_bundle(settings, revision)
        self.loads += 1
        if data is None or hashlib.sha256(data).hexdigest() != revision.sha256:
            return None if data is None else b""
        with self._lock:
            self._items[revision.sha256] = data
            while len(self._items) > self.entries or (
                sum(map(len, self._items.values())) > self.max_bytes and len(self._items) > 1
            ):
                self._items.popitem(last=False)
        return data


def make_blueprint(ctx: AppContext) -> Blueprint:
    """Build the bundle endpoint over ``ctx``."""
    bp = Blueprint("quarterdeck_bundles", __name__)
    cache = VerifiedBytes()
    bp.record_once(lambda state: state.app.extensions.setdefault("quarterdeck_bundles", cache))

    @bp.get("/bundles/<name>")
    def serve_bundle(name: str) -> Response | tuple[Response, int]:
        env = environment_for_token(ctx.settings, request.headers.get("Authorization"))
        if env is None:
            response, status = error(401, "unknown or missing bearer token for /bundles")
            response.headers["WWW-Authenticate"] = 'Bearer realm="quarterdeck"'
            return response, status
        with ctx.session() as session:
            # A Kubernetes-pinned OPA asks for its revision in the resource (`?revision=`).
            wanted, revision = pinned_revision(
                session, name, env, wanted=request.args.get("revision")
            )
        if wanted is None:
            return error(404, f"no revision of {name} is pinned for {env}")
        if revision is None:
            return error(404, f"revision {wanted} of {name} is not registered")
        if revision.signature_status == "invalid":
            return error(409, f"{name} {wanted}: signature invalid, not served")
        etag = f'"{revision.sha256}"'
        if etag_matches(request.headers.get("If-None-Match"), etag):
            return Response(status=304, headers={"ETag": etag})
        data = cache.get(ctx.settings, revision)
        if data is None:
            return error(404, f"tarball of {name} {wanted} not found")
        if not data:
            log.error("bundle %s %s does not match its registered sha256", name, wanted)
            return error(409, f"{name} {wanted} does not match the registry")
        return Response(
            data,
            mimetype=OPA_BUNDLE_TYPE,
            headers={"ETag": etag, "Cache-Control": "no-cache"},
        )

    return bp
