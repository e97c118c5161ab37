"""Demo users, one per role, so the demo can be signed into (local auth mode).

Passwords are public demo values (`quarterdeck-<name>`); salts derive from the user name so a
re-seed writes identical rows, and an existing user is never overwritten.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from store.ingest import IngestResult, upsert
from store.models.actions import User
from store.passwords import hash_password

DEMO_USERS = {
    "vera": "viewer",
    "sam": "sre",
    "cara": "captain",
    "mia": "auditor",
    "ada": "admin",
}
CREATED_AT = datetime(2025, 11, 10, tzinfo=UTC)
SIGN_IN_HINT = (
    "sign in at /sign-in as vera (viewer), sam (sre), cara (captain), mia (auditor) or ada "
    "(admin); "
    "password: quarterdeck-<name>"
)


def demo_password(username: str) -> str:
    """The public demo password of ``username``."""
    return f"quarterdeck-{username}"


def feed(session: Session) -> dict[str, IngestResult]:
    """Insert the four demo users (idempotent: existing names are left alone)."""
    rows = [
        {
            "username": name,
            "password_hash": hash_password(
                demo_password(name), salt=hashlib.sha256(f"demo-salt/{name}".encode()).digest()[:16]
            ),
            "roles": [role],
            "disabled": False,
            "created_at": CREATED_AT,
        }
        for name, role in DEMO_USERS.items()
    ]
    result = IngestResult()
    result.add(upsert(session, User, rows, conflict=("username",)))
    return {"users": result}
