"""Short-lived export tokens, as seed §5.6 issues them: `b64url(payload) "." b64url(HMAC)`.

The payload is the JSON `{"sub", "scope", "exp"}` (plus a `jti` naming the download); the
HMAC-SHA256 is computed over the payload's JSON bytes, exactly as the Express snippet does, so a
token issued there verifies here. Expiry is checked against the verifier's clock and a token
claiming to live longer than :data:`MAX_TTL_S` is refused even if correctly signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

MAX_TTL_S = 600


class TokenError(ValueError):
    """The token is refused; the message says why (shown to the caller, never the secret)."""


@dataclass(frozen=True)
class Claims:
    """The verified claims of one export token."""

    sub: str
    scope: str
    exp: int
    jti: str
    tenant: str | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_token(
    secret: str,
    *,
    sub: str,
    scope: str,
    ttl_s: int,
    now: float | None = None,
    jti: str | None = None,
    tenant: str | None = None,
) -> str:
    """Issue a token for ``sub`` limited to ``scope`` that expires in ``ttl_s`` (≤ 10 min).

    ``tenant`` (optional ``ten`` claim) names the tenant whose download limit the token counts
    against; without it the download handler uses the proxy's `X-Tenant` or the default tenant.
    """
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl_s must be between 1 and {MAX_TTL_S} seconds, got {ttl_s}")
    issued = int(now if now is not None else time.time())
    claims: dict[str, object] = {
        "sub": sub,
        "scope": scope,
        "exp": issued + ttl_s,
        "jti": jti or secrets.token_hex(8),
    }
    if tenant:
        claims["ten"] = tenant
    payload = json.dumps(claims, separators=(",", ":")).encode()
    signature = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(signature)}"


def verify_token(secret: str, token: str, *, scope: str, now: float | None = None) -> Claims:
    """Return the claims of ``token`` if it is signed, unexpired and for ``scope``.

    Raises :class:`TokenError`. The signature is compared in constant time before the payload
    is trusted; scope and expiry are checked only on a correctly signed payload.
    """
    if not token or token.count(".") != 1:
        raise TokenError("malformed token")
    body, sig = token.split(".")
    try:
        payload = _unb64(body)
        signature = _unb64(sig)
    except (binascii.Error, ValueError) as exc:
        raise TokenError("malformed token") from exc
    expected = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise TokenError("bad signature")
    try:
        data = json.loads(payload)
        sub, claimed, exp = str(data["sub"]), str(data["scope"]), data["exp"]
    except (ValueError, KeyError, TypeError) as exc:
        raise TokenError("malformed claims") from exc
    if isinstance(exp, bool) or not isinstance(exp, int):
        raise TokenError("malformed claims: exp is not an integer")
    current = now if now is not None else time.time()
    if exp <= current:
        raise TokenError("expired")
    if exp - current > MAX_TTL_S:
        raise TokenError(f"exp is more than {MAX_TTL_S} s ahead")
    if not hmac.compare_digest(claimed.encode(), scope.encode()):
        raise TokenError("wrong scope")
    tenant = data.get("ten")
    return Claims(
        sub=sub,
        scope=claimed,
        exp=exp,
        jti=str(data.get("jti") or ""),
        tenant=str(tenant) if isinstance(tenant, str) and tenant else None,
    )


def derive_secret(root: str, purpose: str) -> str:
    """Derive a purpose-bound secret from the console's secret key (when none is configured)."""
    return hmac.new(root.encode(), purpose.encode(), hashlib.sha256).hexdigest()
