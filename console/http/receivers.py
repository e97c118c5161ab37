"""The one rule for every `/ingest/*` receiver: credentials, error shape, bounded JSON.

- **Bearer tokens** (`Authorization: Bearer …`, OPA's `credentials.bearer`, CI jobs, exports,
  incidents, Alertmanager): `bearer_refusal` compares in constant time and answers 401 with
  `WWW-Authenticate` for a missing or wrong token, 503 when no token is configured (the receiver
  is disabled rather than open). Demo mode never opens a receiver: it configures documented demo
  tokens instead (`demo_secret`), which `make run` prints.
- **HMAC signatures** (GitHub's `X-Hub-Signature-256`): `signature_refusal`.
- **One JSON error shape** for every HTTP API: `{"error": "<what is wrong>", …extra}`.
- **Bounded JSON**: `loads_bounded` (from `collectors.base`, shared with the collectors that
  decode bodies themselves) refuses nesting deeper than `MAX_JSON_DEPTH` with a `ValueError`
  (a clear 400), never a `RecursionError` (a 500). `read_body` reads at most a limit (413).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from flask import Response, jsonify, request
from pydantic import SecretStr

from collectors.base import MAX_JSON_DEPTH, loads_bounded

__all__ = [
    "MAX_JSON_DEPTH",
    "BodyTooLarge",
    "bearer_matches",
    "bearer_refusal",
    "demo_secret",
    "error",
    "json_depth",
    "loads_bounded",
    "read_body",
    "request_json",
    "signature_ok",
    "signature_refusal",
]

log = logging.getLogger(__name__)
_READ_STEP = 64 * 1024

PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "demo", "secret", "quarterdeck-demo"})


def error(status: int, message: str, **extra: Any) -> tuple[Response, int]:
    """The JSON error every API answers with: `{"error": message, **extra}`."""
    return jsonify({"error": message, **extra}), status


def demo_secret(
    value: SecretStr | str | None, *, demo_mode: bool, demo_value: str, setting: str
) -> str | None:
    """The secret in force for a receiver: the configured one, else the demo's in demo mode.

    A well-known default (`changeme`, …) outside demo mode counts as unset, so the receiver refuses
    requests (503) until a real secret is configured.
    """
    secret = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not secret:
        return demo_value if demo_mode else None
    if secret in PLACEHOLDER_SECRETS and not demo_mode:
        log.error("%s is a well-known default; the receiver refuses requests till set", setting)
        return None
    return secret


def bearer_refusal(expected: str | None, *, setting: str, path: str) -> tuple[Response, int] | None:
    """None when the request presents ``expected`` as its bearer token, else the answer to send.

    ``setting`` names the variable that configures the token (shown when none is set); ``path``
    names the receiver in the 401 message.
    """
    if not expected:
        return error(503, f"receiver disabled: set {setting} to the token the sender presents")
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        response, status = error(401, f"missing bearer token for {path} (Authorization: Bearer …)")
        response.headers["WWW-Authenticate"] = 'Bearer realm="quarterdeck"'
        return response, status
    if not hmac.compare_digest(presented.strip().encode(), expected.encode()):
        response, status = error(401, f"bearer token is not valid for {path}")
        response.headers["WWW-Authenticate"] = 'Bearer realm="quarterdeck", error="invalid_token"'
        return response, status
    return None


def bearer_matches(expected: str, header: str | None) -> bool:
    """Whether an `Authorization` header carries ``expected`` as a bearer token (constant time)."""
    scheme, _, presented = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), expected.encode()
    )


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """Check `X-Hub-Signature-256: sha256=<hex>` against HMAC-SHA256(secret, body)."""
    if not header:
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode())


def signature_refusal(
    secret: str | None, body: bytes, *, header_name: str, setting: str
) -> tuple[Response, int] | None:
    """None when the body's HMAC-SHA256 signature header is right, else the answer to send."""
    if not secret:
        return error(503, f"receiver disabled: set {setting}")
    header = request.headers.get(header_name)
    if header is None:
        response, status = error(401, f"missing {header_name} header")
    elif not signature_ok(secret, body, header):
        response, status = error(401, f"{header_name} does not match the body and the secret")
    else:
        return None
    response.headers["WWW-Authenticate"] = f'HMAC-SHA256 header="{header_name}"'
    return response, status


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """The nesting depth of a decoded JSON value, iteratively (stops counting past ``limit``)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


class BodyTooLarge(ValueError):
    """The request body is over the receiver's limit; answer 413 with the message."""


def read_body(limit: int) -> bytes:
    """Read at most ``limit`` bytes of the body; `BodyTooLarge` beyond (never buffering more)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyTooLarge(f"body of {declared} bytes is over the {limit} byte limit")
    stream = request.stream
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(_READ_STEP, limit + 1 - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body is over the {limit} byte limit")
    return b"".join(parts)


def request_json(*, max_depth: int = MAX_JSON_DEPTH, body: bytes | None = None) -> Any:
    """The request body (or ``body``) as bounded JSON; `ValueError` with a reason otherwise."""
    if body is None:
        body = request.get_data()
    if not body.strip():
        raise ValueError("body is empty: expected JSON")
    try:
        return loads_bounded(body, max_depth=max_depth)
    except UnicodeDecodeError as exc:
        raise ValueError(f"body is not UTF-8 JSON: {exc.reason}") from exc
