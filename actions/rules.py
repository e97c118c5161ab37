"""Named rules shared by actions: health from collected observations, the SLO error budget.

Rules read the store only; each returns a :class:`RuleResult` whose reason says what was seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from actions.base import RuleResult
from store.models import HealthCheckObservation
from store.queries.reliability import policy_state
from store.slo import SloDefinition

# Route 53 considers an endpoint healthy when more than 18% of its checkers report it healthy.
ROUTE53_HEALTHY_SHARE = 0.18


def healthy_share_verdict(statuses: list[bool]) -> bool:
    """Return Route 53's verdict for checker observations (healthy above 18% healthy)."""
    return bool(statuses) and sum(statuses) / len(statuses) > ROUTE53_HEALTHY_SHARE


def observed_health(session: Session, health_check_id: str) -> tuple[bool | None, str]:
    """Return the latest collected verdict for a health check, or None when none was collected."""
    latest = session.scalar(
        select(func.max(HealthCheckObservation.checked_at)).where(
            HealthCheckObservation.health_check_id == health_check_id
        )
    )
    if latest is None:
        return None, f"no observation of health check {health_check_id} was collected"
    # Checkers report within seconds of each other; take every report of the last 5 minutes.
    rows = session.scalars(
        select(HealthCheckObservation.healthy).where(
            HealthCheckObservation.health_check_id == health_check_id,
            HealthCheckObservation.checked_at >= latest - timedelta(minutes=5),
        )
    ).all()
    healthy = healthy_share_verdict(list(rows))
    return healthy, (
        f"{sum(rows)}/{len(rows)} checkers healthy at {latest:%Y-%m-%d %H:%M} UTC (collected)"
    )


def error_budget_not_frozen(
    session: Session, slos: Sequence[SloDefinition], *, now: datetime | None = None
) -> RuleResult:
    """Fail while any service's error-budget policy says `freeze`.

    Reads the same policy state as `GET /api/gates/<service>` (store.queries.reliability), so a
    deploy gate and a guarded action can never disagree about a freeze.
    """
    name = "error-budget-not-frozen"
    if not slos:
        return RuleResult(name, True, "no SLOs defined: not checked")
    at = now or datetime.now(UTC)
    frozen: list[str] = []
    for service in sorted({s.service for s in slos}):
        state, reason, _ = policy_state(session, list(slos), service=service, as_of=at)
        if state == "freeze":
            frozen.append(f"{service}: {reason}")
    if frozen:
        return RuleResult(name, False, "error-budget policy says freeze — " + "; ".join(frozen))
    services = len({s.service for s in slos})
    return RuleResult(name, True, f"error-budget policy normal for {services} service(s)")
