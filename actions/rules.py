"""Named rules shared by actions: health from collected observations, the SLO error budget.

Rules read the store only; each returns a :class:`RuleResult` whose reason says what was seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from actions.base import RuleResult
from store.models import HealthCheckObservation, TrafficSample
from store.queries.reliability import policy_state
from store.slo import SloDefinition

# Route 53 considers an endpoint healthy when more than 18% of its checkers report it healthy.
ROUTE53_HEALTHY_SHARE = 0.18
# Observed traffic counts as health evidence when it is this recent; above this 5xx share the
# region is unhealthy.
TRAFFIC_WINDOW = timedelta(minutes=15)
MAX_5XX_SHARE = 0.05


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


def traffic_health(
    session: Session,
    region: str,
    *,
    now: datetime,
    window: timedelta = TRAFFIC_WINDOW,
    max_5xx_share: float = MAX_5XX_SHARE,
) -> tuple[bool | None, str]:
    """Health from the traffic the console observed for ``region`` in the last ``window``.

    None when nothing was observed (no evidence); otherwise healthy while the 5xx share of the
    requests stays at or under ``max_5xx_share``.
    """
    row = session.execute(
        select(
            func.count(TrafficSample.id),
            func.sum(TrafficSample.requests_per_s),
            func.sum(TrafficSample.rate_5xx_per_s),
        ).where(
            TrafficSample.region == region,
            TrafficSample.ts > now - window,
            TrafficSample.ts <= now,
        )
    ).one()
    count, requests, errors = int(row[0] or 0), float(row[1] or 0.0), float(row[2] or 0.0)
    minutes = int(window.total_seconds() // 60)
    if count == 0 or requests <= 0:
        return None, f"no traffic observed for {region} in the last {minutes} min"
    share = errors / requests
    healthy = share <= max_5xx_share
    return healthy, (
        f"observed 5xx share {100 * share:.1f}% over the last {minutes} min "
        f"(limit {100 * max_5xx_share:g}%)"
    )


def observed_share(session: Session, regions: Sequence[str], *, now: datetime) -> dict[str, float]:
    """Each region's share (percent) of the requests observed in the last traffic window."""
    rows = session.execute(
        select(TrafficSample.region, func.sum(TrafficSample.requests_per_s))
        .where(
            TrafficSample.region.in_(list(regions)),
            TrafficSample.ts > now - TRAFFIC_WINDOW,
            TrafficSample.ts <= now,
        )
        .group_by(TrafficSample.region)
    ).all()
    total = sum(float(r[1] or 0.0) for r in rows)
    if total <= 0:
        return {}
    return {str(r[0]): 100.0 * float(r[1] or 0.0) / total for r in rows}


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
