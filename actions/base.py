"""The guarded-action contract: who acts, what a plan holds, and what an action must implement.

An action reads state and computes a plan with no side effects; the lifecycle in
`actions.registry` adds the generic rules, approvals, locks, apply and audit around it.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from store.ingest import utcnow

ROLES = ("viewer", "sre", "captain", "auditor", "admin")

#: Where "now" comes from (aware UTC). Everything that compares with now takes one, so tests
#: run on a fixed clock and the suite passes with the system clock shifted.
Clock = Callable[[], datetime]
SYSTEM_CLOCK: Clock = utcnow


@dataclass(frozen=True)
class Actor:
    """The person acting, as the console or the CLI authenticated them."""

    name: str
    roles: frozenset[str]

    def has(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles

    @property
    def may_plan(self) -> bool:
        return self.has("sre") or self.has("captain")

    @property
    def may_approve(self) -> bool:
        return self.has("captain")

    @property
    def may_override(self) -> bool:
        return "admin" in self.roles


@dataclass(frozen=True)
class RuleResult:
    """One named rule's verdict; `overridable=False` rules cannot be bypassed by break-glass."""

    name: str
    passed: bool
    reason: str
    overridable: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "reason": self.reason,
            "overridable": self.overridable,
        }


class InvalidParams(ValueError):
    """The request itself is wrong (bad weight, unknown record or region): nothing is planned."""


@dataclass
class Proposal:
    """What an action computed from current state: the diff and its own rules."""

    target: str
    before: dict[str, Any]
    after: dict[str, Any]
    rules: list[RuleResult]
    state_token: str
    preview: dict[str, Any] = field(default_factory=dict)


@dataclass
class ApplyOutcome:
    """What an apply did: success, a message for the person, verification and details."""

    ok: bool
    message: str
    verified: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanView:
    """The stored plan as an action needs it to apply, verify or roll back."""

    plan_id: str
    environment: str
    params: dict[str, Any]
    before: dict[str, Any]
    after: dict[str, Any]
    actor: str
    reason: str


@dataclass(frozen=True)
class ActionPolicy:
    """Lifecycle settings handed down from the console's settings (actions never read them)."""

    live_environments: frozenset[str] = frozenset()
    production_environments: frozenset[str] = frozenset({"prod"})
    approval_ttl_s: float = 3600.0
    plan_ttl_s: float = 86400.0  # a plan not applied within this is stale: plan again
    lock_ttl_s: float = 900.0
    verify_timeout_s: float = 300.0


def state_token(state: Any) -> str:
    """Fingerprint ``state`` (canonical JSON) so a later re-read can tell whether it changed."""
    text = json.dumps(state, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class GuardedAction(ABC):
    """One kind of change (verb + object) with a stable slug used in audit rows and URLs."""

    slug: ClassVar[str]
    title: ClassVar[str]

    @abstractmethod
    def propose(self, session: Session, params: dict[str, Any], environment: str) -> Proposal:
        """Read current state and compute before/after and this action's rules; no side effects.

        Raises :class:`InvalidParams` for a request that cannot be planned at all.
        """

    @abstractmethod
    def current_token(self, session: Session, plan: PlanView) -> str:
        """Re-read the target's state and return its fingerprint (compared with the plan's)."""

    @abstractmethod
    def apply(self, session: Session, plan: PlanView, *, live: bool) -> ApplyOutcome:
        """Make the change (``live``) or rehearse it without side effects."""

    def verify(self, session: Session, plan: PlanView) -> bool | None:
        """Return True when the change is observed, False when it is not, None while pending."""
        return True

    @abstractmethod
    def rollback_params(self, plan: PlanView) -> dict[str, Any]:
        """Return the parameters that restore the plan's recorded "before"."""
