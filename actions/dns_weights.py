"""FlipDnsWeights (`route53.flip-weights`): change the weights of one name's weighted records.

All weighted record sets of the name go into one transactional change batch, rebuilt from what
was read (TTL, values, alias, health check kept), so nothing but `Weight` changes. Our own
validation runs before Route 53 sees the batch because local peers (moto) accept batches the real
service rejects. Route 53 is reached through `providers.route53.Route53`: botocore's standard
retry mode alone retries `PriorRequestNotComplete`/`Throttling`; verification waits (bounded) for
`INSYNC` with botocore's `resource_record_sets_changed` waiter and reads the weights back.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from actions.base import (
    SYSTEM_CLOCK,
    ApplyOutcome,
    Clock,
    GuardedAction,
    InvalidParams,
    PlanView,
    Proposal,
    RuleResult,
    state_token,
)
from actions.rules import (
    ROUTE53_HEALTHY_SHARE,
    error_budget_not_frozen,
    observed_health,
    observed_share,
    traffic_health,
)
from providers.route53 import Route53, Route53Error, ZoneLookupError, fqdn
from store.models import DnsWeightObservation
from store.slo import SloDefinition

log = logging.getLogger(__name__)

MAX_WEIGHT = 255
MAX_WEIGHTED_SETS = 100


# The provider FlipDnsWeights calls (the collector reads through the same one).
Route53Weights = Route53


@dataclass(frozen=True)
class DnsFlipConfig:
    """Rule thresholds for weight flips."""

    max_step_pct: float = 50.0
    min_healthy_regions: int = 1
    slos: tuple[SloDefinition, ...] = ()
    synthetic_urls: dict[str, str] = field(default_factory=dict)
    synthetic_timeout_s: float = 3.0


def synthetic_check(url: str, timeout_s: float) -> tuple[bool, str]:
    """GET ``url``; a 2xx answer within the timeout is healthy."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (configured URL)
            code = int(response.status)
    except urllib.error.HTTPError as exc:
        return False, f"synthetic check {url}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return False, f"synthetic check {url}: {exc}"
    return 200 <= code < 300, f"synthetic check {url}: HTTP {code}"


def validate_batch(sets: list[dict[str, Any]]) -> list[str]:
    """Check a batch of weighted sets as Route 53 would; return every problem found."""
    problems = []
    if len(sets) > MAX_WEIGHTED_SETS:
        problems.append(f"{len(sets)} weighted sets; Route 53 allows {MAX_WEIGHTED_SETS}")
    ids = [rs.get("SetIdentifier") for rs in sets]
    if len(set(ids)) != len(ids):
        problems.append("duplicate SetIdentifier in the batch")
    ttls = {rs.get("TTL") for rs in sets if "AliasTarget" not in rs}
    if len(ttls) > 1:
        problems.append(f"weighted sets must share one TTL, found {sorted(map(str, ttls))}")
    for rs in sets:
        weight = rs.get("Weight")
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= MAX_WEIGHT:
            problems.append(f"{rs.get('SetIdentifier')}: weight {weight!r} is outside 0–255")
        if "AliasTarget" not in rs and len(rs.get("ResourceRecords", [])) != 1:
            problems.append(f"{rs.get('SetIdentifier')}: a weighted set holds exactly one value")
    return problems


def parse_weights(raw: Any) -> dict[str, int]:
    """Accept `{"us-east": 0}` or `"us-east=0,us-west=100"`; refuse anything outside 0–255."""
    if isinstance(raw, str):
        pairs: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in raw.split(","))):
            if "=" not in part:
                raise InvalidParams(f"weights: {part!r} is not REGION=WEIGHT")
            key, value = part.split("=", 1)
            pairs[key.strip()] = value.strip()
        raw = pairs
    if not isinstance(raw, dict) or not raw:
        raise InvalidParams("weights: give at least one REGION=WEIGHT")
    weights: dict[str, int] = {}
    for region, value in raw.items():
        try:
            weight = int(str(value))
        except ValueError:
            raise InvalidParams(f"weights: {region}={value!r} is not a whole number") from None
        if not 0 <= weight <= MAX_WEIGHT:
            raise InvalidParams(f"weights: {region}={weight} is outside 0–255")
        weights[str(region)] = weight
    return weights


def shares(weights: dict[str, int]) -> dict[str, float]:
    """Traffic share per region in percent (all zero means equal shares, as Route 53 does)."""
    total = sum(weights.values())
    if total == 0:
        return {k: 100.0 / len(weights) for k in weights} if weights else {}
    return {k: 100.0 * v / total for k, v in weights.items()}


def combine_health(evidence: list[tuple[bool | None, str]]) -> tuple[bool | None, str]:
    """One verdict from several: any unhealthy wins, else any healthy, else `unknown`."""
    known = [healthy for healthy, _ in evidence if healthy is not None]
    reasons = "; ".join(why for _, why in evidence)
    if not known:
        return None, f"unknown — {reasons}"
    return all(known), reasons


def known_records(session: Session) -> list[dict[str, Any]]:
    """The weighted records the Route 53 collector saw last (name, type, zone), by name."""
    latest = (
        select(
            DnsWeightObservation.record_name,
            DnsWeightObservation.record_type,
            func.max(DnsWeightObservation.observed_at).label("at"),
        )
        .group_by(DnsWeightObservation.record_name, DnsWeightObservation.record_type)
        .subquery()
    )
    rows = session.execute(
        select(
            DnsWeightObservation.record_name,
            DnsWeightObservation.record_type,
            DnsWeightObservation.zone_id,
            DnsWeightObservation.set_identifier,
            DnsWeightObservation.weight,
            DnsWeightObservation.gone,
        ).join(
            latest,
            (DnsWeightObservation.record_name == latest.c.record_name)
            & (DnsWeightObservation.record_type == latest.c.record_type)
            & (DnsWeightObservation.observed_at == latest.c.at),
        )
    ).all()
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for name, rtype, zone, region, weight, gone in rows:
        if gone:
            continue
        entry = records.setdefault(
            (fqdn(name), rtype),
            {"record": fqdn(name), "type": rtype, "zone_id": zone, "weights": {}},
        )
        entry["weights"][region] = int(weight)
    return [records[k] for k in sorted(records)]


class FlipDnsWeights(GuardedAction):
    """Move traffic between regions by changing a Route 53 name's record weights."""

    slug = "route53.flip-weights"
    title = "Flip DNS weights"

    def __init__(
        self,
        provider: Callable[[], Route53],
        config: DnsFlipConfig | None = None,
        *,
        probe: Callable[[str, float], tuple[bool, str]] = synthetic_check,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._provider_factory = provider
        self._provider: Route53 | None = None
        self.config = config or DnsFlipConfig()
        self.probe = probe
        self.clock = clock

    @property
    def provider(self) -> Route53:
        if self._provider is None:
            self._provider = self._provider_factory()
        return self._provider

    def _read(self, params: dict[str, Any]) -> tuple[str, str, str, list[dict[str, Any]]]:
        record = fqdn(str(params.get("record") or ""))
        if record == ".":
            raise InvalidParams("record: give the DNS name whose weights to change")
        try:
            zone = str(params.get("zone_id") or self.provider.find_zone(record))
            sets = self.provider.weighted_sets(zone, record)
        except ZoneLookupError as exc:
            raise InvalidParams(str(exc)) from exc
        except Route53Error as exc:
            raise InvalidParams(f"Route 53: {exc}") from exc
        if not sets:
            raise InvalidParams(f"no weighted records named {record} in zone {zone}")
        types = sorted({str(rs["Type"]) for rs in sets})
        wanted = str(params.get("type") or "").upper()
        if wanted:
            if wanted not in types:
                raise InvalidParams(f"{record} has no weighted {wanted} records (has {types})")
        elif len(types) > 1:
            raise InvalidParams(f"{record} has weighted records of types {types}: give --type")
        else:
            wanted = types[0]
        chosen = sorted(
            (rs for rs in sets if rs["Type"] == wanted), key=lambda rs: str(rs["SetIdentifier"])
        )
        return record, zone, wanted, chosen

    def _token(self, sets: list[dict[str, Any]]) -> str:
        return state_token(sets)

    def propose(self, session: Session, params: dict[str, Any], environment: str) -> Proposal:
        weights = parse_weights(params.get("weights"))
        record, zone, rtype, sets = self._read(params)
        before = {str(rs["SetIdentifier"]): int(rs["Weight"]) for rs in sets}
        unknown = sorted(set(weights) - set(before))
        if unknown:
            raise InvalidParams(
                f"unknown region(s) {', '.join(unknown)} for {record} (known: {', '.join(before)})"
            )
        after = before | weights
        if after == before:
            raise InvalidParams(f"{record} already has these weights: nothing to change")
        health = self._health(session, sets)
        rules = [
            self._target_healthy(before, after, health),
            self._min_healthy(after, health),
            self._max_step(before, after),
            error_budget_not_frozen(session, self.config.slos, now=self.clock()),
        ]
        return Proposal(
            target=f"route53:{zone}/{record}/{rtype}",
            before={"zone_id": zone, "record": record, "type": rtype, "weights": before},
            after={"zone_id": zone, "record": record, "type": rtype, "weights": after},
            rules=rules,
            state_token=self._token(sets),
            preview={
                "shares_before": shares(before),
                "shares_after": shares(after),
                "health": {k: {"healthy": v[0], "reason": v[1]} for k, v in health.items()},
            },
        )

    def _health(
        self, session: Session, sets: list[dict[str, Any]]
    ) -> dict[str, tuple[bool | None, str]]:
        """Each region's health from every evidence the console has (see `combine_health`).

        In order: the record's Route 53 health check (live status with `Inverted`/`Disabled`
        applied, else the collected observations), the alias target (`EvaluateTargetHealth`
        is Route 53's own judgement and not readable through its API), the configured synthetic
        probe, and the traffic observed for the region (5xx share). None of them: unknown.
        """
        now = self.clock()
        verdicts: dict[str, tuple[bool | None, str]] = {}
        for rs in sets:
            region = str(rs["SetIdentifier"])
            evidence: list[tuple[bool | None, str]] = []
            hc = rs.get("HealthCheckId")
            if hc:
                try:
                    evidence.append(
                        self.provider.health_verdict(str(hc), healthy_share=ROUTE53_HEALTHY_SHARE)
                    )
                except Route53Error as exc:
                    healthy, why = observed_health(session, str(hc))
                    evidence.append((healthy, f"{why} (live status unavailable: {exc.code})"))
            else:
                evidence.append((None, "no Route 53 health check attached"))
            alias = rs.get("AliasTarget") or {}
            if alias.get("EvaluateTargetHealth"):
                evidence.append(
                    (
                        None,
                        f"alias target {str(alias.get('DNSName', '?')).rstrip('.')} health is "
                        "evaluated by Route 53 but not readable through its API",
                    )
                )
            url = self.config.synthetic_urls.get(region)
            if url:
                evidence.append(self.probe(url, self.config.synthetic_timeout_s))
            evidence.append(traffic_health(session, region, now=now))
            verdicts[region] = combine_health(evidence)
        return verdicts

    def _target_healthy(
        self,
        before: dict[str, int],
        after: dict[str, int],
        health: dict[str, tuple[bool | None, str]],
    ) -> RuleResult:
        name = "target-region-healthy"
        gaining = [r for r in after if after[r] > before[r]]
        bad = [f"{r}: {health[r][1]}" for r in gaining if health[r][0] is False]
        unknown = [f"{r}: {health[r][1]}" for r in gaining if health[r][0] is None]
        if bad:
            return RuleResult(name, False, "unhealthy target " + "; ".join(bad))
        if unknown:
            return RuleResult(
                name,
                False,
                "health unknown for target " + "; ".join(unknown) + " (an admin may override "
                "with a reason)",
            )
        return RuleResult(
            name, True, f"regions gaining weight are healthy: {', '.join(gaining) or 'none'}"
        )

    def _min_healthy(
        self, after: dict[str, int], health: dict[str, tuple[bool | None, str]]
    ) -> RuleResult:
        name = "min-healthy-regions"
        if not any(after.values()):
            return RuleResult(name, False, "all weights 0: Route 53 would spread traffic evenly")
        serving = [r for r, w in after.items() if w > 0 and health[r][0] is not False]
        need = self.config.min_healthy_regions
        if len(serving) < need:
            return RuleResult(
                name,
                False,
                f"{len(serving)} healthy region(s) would carry weight; at least {need} required",
            )
        return RuleResult(name, True, f"healthy regions carrying weight: {', '.join(serving)}")

    def _max_step(self, before: dict[str, int], after: dict[str, int]) -> RuleResult:
        old, new = shares(before), shares(after)
        step = max(abs(new[r] - old[r]) for r in after)
        limit = self.config.max_step_pct
        return RuleResult(
            "max-step-change",
            step <= limit + 1e-9,
            f"largest share change {step:.1f} points (limit {limit:g})",
        )

    def record_status(self, session: Session, record: str) -> list[dict[str, Any]]:
        """Per region of ``record`` now: weight, planned share, observed share, health.

        Raises InvalidParams when the record cannot be read (the page shows why).
        """
        _, _, _, sets = self._read({"record": record})
        weights = {str(rs["SetIdentifier"]): int(rs["Weight"]) for rs in sets}
        planned = shares(weights)
        seen = observed_share(session, list(weights), now=self.clock())
        health = self._health(session, sets)
        return [
            {
                "region": region,
                "weight": weight,
                "share": planned[region],
                "observed_share": seen.get(region),
                "healthy": health[region][0],
                "health": health[region][1],
            }
            for region, weight in weights.items()
        ]

    def current_token(self, session: Session, plan: PlanView) -> str:
        params = {"record": plan.before["record"], "zone_id": plan.before["zone_id"]}
        params["type"] = plan.before["type"]
        try:
            return self._token(self._read(params)[3])
        except InvalidParams:
            return "gone"

    def _batch(self, plan: PlanView, sets: list[dict[str, Any]]) -> dict[str, Any]:
        weights = plan.after["weights"]
        changes = [
            {
                "Action": "UPSERT",
                "ResourceRecordSet": rs | {"Weight": int(weights[rs["SetIdentifier"]])},
            }
            for rs in sets
        ]
        comment = f"quarterdeck {plan.plan_id} by {plan.actor}: {plan.reason}"[:256]
        return {"Comment": comment, "Changes": changes}

    def apply(self, session: Session, plan: PlanView, *, live: bool) -> ApplyOutcome:
        params = {k: plan.before[k] for k in ("record", "zone_id", "type")}
        _, zone, _, sets = self._read(params)
        batch = self._batch(plan, sets)
        problems = validate_batch([c["ResourceRecordSet"] for c in batch["Changes"]])
        if problems:
            return ApplyOutcome(False, "invalid change batch: " + "; ".join(problems))
        if not live:
            return ApplyOutcome(
                True,
                f"dry run: {len(batch['Changes'])} record(s) would change, nothing was sent",
                detail={"change_batch": batch},
            )
        try:
            change_id = self.provider.change(zone, batch)
        except Route53Error as exc:
            text = "; ".join(exc.messages) or str(exc)
            return ApplyOutcome(
                False, f"Route 53 refused the change: {text}", detail={"code": exc.code}
            )
        try:
            status = self.provider.wait_insync(change_id)
        except Route53Error as exc:
            return ApplyOutcome(
                True,
                f"applied but change {change_id} not confirmed INSYNC ({exc}): unverified",
                verified=False,
                detail={"change_id": change_id, "status": "unknown", "code": exc.code},
            )
        read = {str(rs["SetIdentifier"]): int(rs["Weight"]) for rs in self._read(params)[3]}
        matches = read == plan.after["weights"]
        verified = status == "INSYNC" and matches
        if verified:
            message = f"applied: change {change_id} INSYNC, weights read back {read}"
        elif status != "INSYNC":
            message = f"applied but change {change_id} still {status} after the wait: unverified"
        else:
            message = f"applied but weights read back {read}, expected {plan.after['weights']}"
        return ApplyOutcome(
            True,
            message,
            verified=verified,
            detail={"change_id": change_id, "status": status, "read_back": read},
        )

    def rollback_params(self, plan: PlanView) -> dict[str, Any]:
        return {
            "record": plan.before["record"],
            "zone_id": plan.before["zone_id"],
            "type": plan.before["type"],
            "weights": dict(plan.before["weights"]),
        }
