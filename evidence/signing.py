"""Ed25519 keys for evidence packs: load from settings, the demo key, fingerprints, key text.

The key in settings is base64 of the 32-byte private seed (what `quarterdeck evidence keygen`
prints) or a PKCS#8 PEM. Outside demo mode a missing key is refused with how to make one; in
demo mode a fixed, publicly known demo key signs, and packs say so.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

DEMO_SEED = hashlib.sha256(b"quarterdeck demo evidence signing key (public, demo only)").digest()
HOW_TO_CONFIGURE = (
    "no evidence signing key is configured: run `quarterdeck evidence keygen` and set "
    "QUARTERDECK_EVIDENCE__SIGNING_KEY to the private key it prints (keep it secret), "
    "or run with QUARTERDECK_DEMO_MODE=true to sign with the public demo key"
)


class SigningKeyError(ValueError):
    """The signing key is missing or unusable; the message says how to fix it."""


def load_private_key(text: str) -> Ed25519PrivateKey:
    """Parse a base64 32-byte seed or a PKCS#8 PEM Ed25519 private key."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except ValueError as exc:
            raise SigningKeyError(f"evidence signing key: not a readable PEM key ({exc})") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError("evidence signing key: the PEM key is not an Ed25519 key")
        return key
    try:
        seed = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SigningKeyError("evidence signing key: not base64 and not a PEM key") from exc
    if len(seed) != 32:
        raise SigningKeyError(
            f"evidence signing key: expected a 32-byte Ed25519 seed, got {len(seed)} bytes"
        )
    return Ed25519PrivateKey.from_private_bytes(seed)


def resolve_signing_key(
    configured: str | None, *, demo_mode: bool
) -> tuple[Ed25519PrivateKey, bool]:
    """The configured key, or the demo key in demo mode; returns (key, is_demo_key)."""
    if configured:
        return load_private_key(configured), False
    if demo_mode:
        return Ed25519PrivateKey.from_private_bytes(DEMO_SEED), True
    raise SigningKeyError(HOW_TO_CONFIGURE)


def public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    """A short, stable name of a public key: `ed25519:` + first 16 hex of SHA-256(raw key)."""
    return "ed25519:" + hashlib.sha256(public_raw(key)).hexdigest()[:16]


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """Parse a base64 raw public key or a PEM public key."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise SigningKeyError("public key: not an Ed25519 key")
        return key
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise SigningKeyError("public key: expected base64 of 32 bytes or a PEM key") from exc


def generate_key_text() -> tuple[str, str]:
    """A new key pair as (private seed base64, public key base64)."""
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return base64.b64encode(seed).decode(), base64.b64encode(public_raw(key.public_key())).decode()
