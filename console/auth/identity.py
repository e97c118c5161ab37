"""Who is making the current request: the identity the auth layer puts on `flask.g.identity`.

Every person has one canonical user key (:func:`user_key`: trimmed, case-folded), used as the
requester, the approver, the audit actor and the rate-limit key, whichever spelling the sign-in
form or the auth proxy's header carried.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("viewer", "sre", "captain", "auditor", "admin")


def user_key(name: str) -> str:
    """The canonical key of a user name: surrounding space trimmed, Unicode case-folded.

    `Cara@Example.com ` and `cara@example.com` are one person.
    """
    return name.strip().casefold()


@dataclass(frozen=True)
class Identity:
    """A signed-in person (or an auth proxy's user) and their roles; ``user`` is canonical."""

    user: str
    roles: frozenset[str]
    source: str  # "local" | "header"

    def __post_init__(self) -> None:
        object.__setattr__(self, "user", user_key(self.user))

    def has(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles
