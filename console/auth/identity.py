"""Who is making the current request: the identity the auth layer puts on `flask.g.identity`."""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("viewer", "sre", "captain", "admin")


@dataclass(frozen=True)
class Identity:
    """A signed-in person (or an auth proxy's user) and their roles."""

    user: str
    roles: frozenset[str]
    source: str  # "local" | "header"

    def has(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles
