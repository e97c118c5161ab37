"""Password hashes for local users: scrypt with a per-user salt, compared in constant time.

The store owns the `users` table and so the format of its `password_hash` column
(`scrypt$N$r$p$salt$hash`); sign-in (console.auth) and the demo's users both use these helpers.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
DUMMY_HASH = "scrypt$16384$8$1$" + "00" * 16 + "$" + "00" * 32
"""Checked against for unknown users so a miss costs the same scrypt as a hit."""


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """Return `scrypt$N$r$p$salt$hash` for ``password`` with a fresh 16-byte salt."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    """Compare ``password`` with a stored scrypt hash in constant time."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        candidate = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except ValueError:
        return False
    return hmac.compare_digest(candidate, bytes.fromhex(digest))
