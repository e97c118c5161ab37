"""FlipDnsWeights against moto's Route 53 over real HTTP, and against recorded AWS answers.

moto accepts batches the real service rejects and always answers healthy/INSYNC, so our own
validation and the unhealthy and PENDING paths are driven by botocore's Stubber with responses
shaped like the real service's. moto never throttles: a botocore `before-send` hook answers
as a throttled Route 53 does, and the same hooks count our calls against HTTP attempts.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from sqlalchemy import select
from sqlalchemy.orm import Session

from actions.base import ActionPolicy, Actor, InvalidParams, PlanView
from actions.dns_weights import (
    DnsFlipConfig,
    FlipDnsWeights,
    parse_weights,
    validate_batch,
)
from actions.registry import ActionService
from console import clients
from console.context import AppContext
from providers.route53 import Route53
from store.models import ActionAudit, HealthCheckObservation
from store.models.actions import ActionPlan
from tests.conftest import FIXED_NOW, FakeClock, make_settings
from tests.peers_actions import (
    CREDS,
    RECORD,
    create_weighted_record,
    read_weights,
    route53_client,
    throttle,
)

SRE = Actor("sam", frozenset({"sre"}))
CAPTAIN = Actor("cara", frozenset({"captain"}))


def observe_traffic(session: Session, share_5xx: dict[str, float], *, at: datetime) -> None:
    """Traffic the console observed per region (health evidence when a set has no check)."""
    from store.models import TrafficSample

    for region, share in share_5xx.items():
        session.add(
            TrafficSample(
                ts=at,
                region=region,
                ingress="gateway",
                requests_per_s=100.0,
                rate_5xx_per_s=100.0 * share,
            )
        )
    session.flush()


@pytest.fixture
def bare_session(ctx: AppContext) -> Iterator[Session]:
    """No traffic observed: a region without a health check has unknown health."""
    with ctx.session() as s:
        yield s


@pytest.fixture
def session(bare_session: Session) -> Session:
    """Healthy traffic observed a minute before the service's clock in both regions."""
    observe_traffic(
        bare_session, {"us-east": 0.001, "us-west": 0.001}, at=FIXED_NOW - timedelta(minutes=1)
    )
    return bare_session


def service(client: Any, *, live: tuple[str, ...] = ("stage",), **config: Any) -> ActionService:
    clock = FakeClock(FIXED_NOW)
    action = FlipDnsWeights(
        lambda: Route53(client, poll_s=0.01), DnsFlipConfig(**config), clock=clock
    )
    return ActionService([action], ActionPolicy(live_environments=frozenset(live)), clock=clock)


def audit_outcomes(session: Session) -> list[str]:
    return list(session.scalars(select(ActionAudit.outcome).order_by(ActionAudit.seq)))


def test_a_passing_live_flip_changes_the_weights_read_back_with_boto3(
    route53: Any, session: Session
) -> None:
    zone, _ = create_weighted_record(route53)
    svc = service(route53)

    planned = svc.plan(
        session,
        SRE,
        "route53.flip-weights",
        {"record": "api.example.com", "weights": "us-east=30,us-west=70"},
        "stage",
    )
    assert planned.ok, planned.message
    assert planned.plan is not None
    applied = svc.apply(session, SRE, planned.plan.plan_id, reason="shift load west", live=True)

    assert applied.ok, applied.message
    assert read_weights(route53, zone) == {"us-east": 30, "us-west": 70}
    assert planned.plan.status == "verified"
    assert planned.plan.result["read_back"] == {"us-east": 30, "us-west": 70}
    assert audit_outcomes(session) == ["planned", "applied"]


def test_a_dry_run_changes_nothing_and_is_audited(route53: Any, session: Session) -> None:
    zone, _ = create_weighted_record(route53)
    svc = service(route53)
    planned = svc.plan(
        session,
        SRE,
        "route53.flip-weights",
        {"record": RECORD, "weights": {"us-east": 40, "us-west": 60}},
        "stage",
    )
    assert planned.plan is not None

    result = svc.apply(session, SRE, planned.plan.plan_id, reason="rehearse", live=False)

    assert result.ok and "nothing was sent" in result.message
    assert read_weights(route53, zone) == {"us-east": 50, "us-west": 50}
    assert audit_outcomes(session) == ["planned", "dry-run"]


def test_a_blocked_flip_names_its_rules_and_leaves_weights_unchanged(
    route53: Any, session: Session
) -> None:
    zone, _ = create_weighted_record(route53)
    svc = service(route53, max_step_pct=25)

    planned = svc.plan(
        session,
        SRE,
        "route53.flip-weights",
        {"record": RECORD, "weights": "us-east=0,us-west=0"},
        "stage",
    )
    assert planned.plan is not None
    applied = svc.apply(session, SRE, planned.plan.plan_id, reason="try anyway", live=True)

    assert not planned.ok
    assert planned.blocked_by == ["min-healthy-regions"]
    assert not applied.ok and applied.blocked_by == ["min-healthy-regions"]
    assert read_weights(route53, zone) == {"us-east": 50, "us-west": 50}
    assert audit_outcomes(session) == ["blocked", "refused"]

    stepped = svc.plan(
        session,
        SRE,
        "route53.flip-weights",
        {"record": RECORD, "weights": "us-east=0,us-west=100"},
        "stage",
    )
    assert stepped.blocked_by == ["max-step-change"]
    assert "largest share change 50.0 points (limit 25)" in stepped.message or any(
        "limit 25" in r["reason"]
        for r in stepped.plan.rules  # type: ignore[union-attr]
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"record": RECORD, "weights": "us-east=300"}, "us-east=300 is outside 0–255"),
        ({"record": RECORD, "weights": "us-east=-1"}, "outside 0–255"),
        ({"record": RECORD, "weights": "eu-central=10"}, "unknown region(s) eu-central"),
        (
            {"record": "nope.example.com", "weights": "us-east=10"},
            "no weighted records named nope.example.com.",
        ),
        (
            {"record": "api.other.org", "weights": "us-east=10"},
            "no hosted zone holds api.other.org.",
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_message_and_an_audit_row(
    route53: Any, session: Session, params: dict[str, Any], message: str
) -> None:
    zone, _ = create_weighted_record(route53)

    result = service(route53).plan(session, SRE, "route53.flip-weights", params, "stage")

    assert not result.ok and message in result.message
    assert result.plan is None
    assert audit_outcomes(session) == ["refused"]
    assert session.scalar(select(ActionPlan)) is None
    assert read_weights(route53, zone) == {"us-east": 50, "us-west": 50}


def test_apply_refuses_when_the_weights_changed_since_the_plan(
    route53: Any, session: Session
) -> None:
    zone, _ = create_weighted_record(route53)
    svc = service(route53)
    planned = svc.plan(
        session,
        SRE,
        "route53.flip-weights",
        {"record": RECORD, "weights": "us-east=40,us-west=60"},
        "stage",
    )
    assert planned.plan is not None
    route53.change_resource_record_sets(
        HostedZoneId=zone,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": RECORD,
                        "Type": "A",
                        "SetIdentifier": "us-west",
                        "Weight": 20,
                        "TTL": 60,
                        "ResourceRecords": [{"Value": "10.0.1.1"}],
                    },
                }
            ]
        },
    )

    result = svc.apply(session, SRE, planned.plan.plan_id, reason="go", live=True)

    assert not result.ok and "changed since the plan" in result.message
    assert read_weights(route53, zone) == {"us-east": 50, "us-west": 20}


def test_live_apply_outside_the_configured_environments_is_refused(
    route53: Any, session: Session
) -> None:
    zone, _ = create_weighted_record(route53)
    svc = service(route53, live=())
    planned = svc.plan(
        session,
        SRE,
        "route53.flip-weights",
        {"record": RECORD, "weights": "us-east=40,us-west=60"},
        "stage",
    )
    assert planned.plan is not None

    result = svc.apply(session, SRE, planned.plan.plan_id, reason="go", live=True)

    assert not result.ok and "live apply is not enabled for stage" in result.message
    assert read_weights(route53, zone) == {"us-east": 50, "us-west": 50}


def test_rollback_restores_the_recorded_before(route53: Any, session: Session) -> None:
    zone, _ = create_weighted_record(route53)
    svc = service(route53)
    planned = svc.plan(
        session,
        SRE,
        "route53.flip-weights",
        {"record": RECORD, "weights": "us-east=20,us-west=80"},
        "stage",
    )
    assert planned.plan is not None
    svc.apply(session, SRE, planned.plan.plan_id, reason="shift", live=True)

    back = svc.rollback(session, SRE, planned.plan.plan_id, reason="west is slow")
    assert back.plan is not None and back.plan.rollback_of == planned.plan.plan_id
    svc.apply(session, SRE, back.plan.plan_id, reason="west is slow", live=True)

    assert read_weights(route53, zone) == {"us-east": 50, "us-west": 50}


def test_collected_unhealthy_observations_block_the_target_when_live_status_fails(
    bare_session: Session,
) -> None:
    session = bare_session
    client = boto3.client("route53", region_name="us-east-1", **CREDS)
    for region, ok in (("us-east-1", False), ("us-west-2", False), ("eu-west-1", False)):
        session.add(
            HealthCheckObservation(
                health_check_id="hc-west",
                checker_region=region,
                healthy=ok,
                status="Failure: Connection timed out",
                checked_at=datetime(2026, 1, 5, tzinfo=UTC),
            )
        )
    session.flush()
    with Stubber(client) as stub:
        stub.add_response(
            "list_resource_record_sets",
            {
                "ResourceRecordSets": _sets(west_hc="hc-west"),
                "IsTruncated": False,
                "MaxItems": "100",
            },
        )
        stub.add_client_error(
            "get_health_check",
            "NoSuchHealthCheck",
            "No health check exists with the specified ID",
            404,
        )
        proposal = FlipDnsWeights(lambda: Route53(client)).propose(
            session, {"record": RECORD, "zone_id": "Z1", "weights": "us-east=30,us-west=70"}, "prod"
        )

    rule = next(r for r in proposal.rules if r.name == "target-region-healthy")
    assert not rule.passed
    assert "0/3 checkers healthy" in rule.reason and "NoSuchHealthCheck" in rule.reason


def _sets(*, west_hc: str | None = None, east: int = 50, west: int = 50) -> list[dict[str, Any]]:
    west_set: dict[str, Any] = {
        "Name": RECORD,
        "Type": "A",
        "SetIdentifier": "us-west",
        "Weight": west,
        "TTL": 60,
        "ResourceRecords": [{"Value": "10.0.1.1"}],
    }
    if west_hc:
        west_set["HealthCheckId"] = west_hc
    return [
        {
            "Name": RECORD,
            "Type": "A",
            "SetIdentifier": "us-east",
            "Weight": east,
            "TTL": 60,
            "ResourceRecords": [{"Value": "10.0.0.1"}],
        },
        west_set,
    ]


def _health_check(hc: str, **config: Any) -> dict[str, Any]:
    """A `GetHealthCheck` answer (botocore's shape) for ``hc``."""
    return {
        "HealthCheck": {
            "Id": hc,
            "CallerReference": f"ref-{hc}",
            "HealthCheckConfig": {"Type": "HTTPS", "FullyQualifiedDomainName": "gw"} | config,
            "HealthCheckVersion": 1,
        }
    }


def test_a_failing_live_health_check_blocks_the_region_gaining_weight(
    bare_session: Session,
) -> None:
    session = bare_session
    client = boto3.client("route53", region_name="us-east-1", **CREDS)
    failure = {
        "HealthCheckObservations": [
            {
                "Region": r,
                "IPAddress": f"15.177.{i}.1",
                "StatusReport": {
                    "Status": "Failure: HTTP Status Code 503, Service Unavailable",
                    "CheckedTime": datetime(2026, 1, 5, tzinfo=UTC),
                },
            }
            for i, r in enumerate(("us-east-1", "us-west-1", "eu-west-1", "ap-southeast-1"))
        ]
    }
    with Stubber(client) as stub:
        stub.add_response(
            "list_resource_record_sets",
            {
                "ResourceRecordSets": _sets(west_hc="hc-west"),
                "IsTruncated": False,
                "MaxItems": "100",
            },
        )
        stub.add_response(
            "get_health_check", _health_check("hc-west"), {"HealthCheckId": "hc-west"}
        )
        stub.add_response("get_health_check_status", failure, {"HealthCheckId": "hc-west"})
        proposal = FlipDnsWeights(lambda: Route53(client)).propose(
            session, {"record": RECORD, "zone_id": "Z1", "weights": "us-east=0,us-west=100"}, "prod"
        )

    failed = {r.name for r in proposal.rules if not r.passed}
    assert failed == {"target-region-healthy", "min-healthy-regions"}


def test_an_inverted_health_check_is_unhealthy_though_its_checkers_succeed(
    route53: Any, session: Session
) -> None:
    """Route 53 treats an inverted check as unhealthy when its checkers see the endpoint up:
    the demo's control (`demo.route53.set_region_health`) inverts the check the same way."""
    from demo.route53 import seed_records, set_region_health

    zone = seed_records(route53)
    svc = service(route53)
    set_region_health(route53, "us-west", healthy=False)

    blocked = svc.plan(
        session,
        SRE,
        "route53.flip-weights",
        {"record": "api.example.com", "weights": "us-east=30,us-west=70"},
        "stage",
    )
    set_region_health(route53, "us-west", healthy=True)
    passes = svc.plan(
        session,
        SRE,
        "route53.flip-weights",
        {"record": "api.example.com", "weights": "us-east=30,us-west=70"},
        "stage",
    )

    assert blocked.blocked_by == ["target-region-healthy"]
    reason = next(r["reason"] for r in blocked.plan.rules if r["name"] == "target-region-healthy")  # type: ignore[union-attr]
    assert "inverted" in reason and "us-west" in reason
    assert passes.ok, passes.message
    sets = route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    assert {rs["SetIdentifier"]: rs["Weight"] for rs in sets if rs["Name"] == RECORD} == {
        "us-east": 50,
        "us-west": 50,
    }


def test_a_region_without_health_evidence_is_unknown_and_blocks_unless_an_admin_overrides(
    route53: Any, bare_session: Session
) -> None:
    session = bare_session
    zone, _ = create_weighted_record(route53)  # us-west has no health check
    svc = service(route53)
    admin = Actor("ada", frozenset({"admin"}))
    params = {"record": RECORD, "weights": "us-east=30,us-west=70"}

    planned = svc.plan(session, SRE, "route53.flip-weights", params, "stage")
    assert planned.plan is not None
    refused = svc.apply(session, SRE, planned.plan.plan_id, reason="go")
    no_reason = svc.apply(
        session, admin, planned.plan.plan_id, reason=" ", override=["target-region-healthy"]
    )
    overridden = svc.apply(
        session,
        admin,
        planned.plan.plan_id,
        reason="west verified by hand",
        override=["target-region-healthy"],
    )

    assert planned.blocked_by == ["target-region-healthy"]
    reason = next(r["reason"] for r in planned.plan.rules if r["name"] == "target-region-healthy")
    assert reason.startswith("health unknown for target us-west: unknown")
    assert not refused.ok and "target-region-healthy" in refused.message
    assert not no_reason.ok and "reason is required" in no_reason.message
    assert overridden.ok, overridden.message
    assert read_weights(route53, zone) == {"us-east": 30, "us-west": 70}
    assert "override" in audit_outcomes(session)


def test_observed_5xx_share_is_health_evidence(route53: Any, bare_session: Session) -> None:
    session = bare_session
    create_weighted_record(route53)
    observe_traffic(session, {"us-west": 0.20}, at=FIXED_NOW - timedelta(minutes=2))
    params = {"record": RECORD, "weights": "us-east=30,us-west=70"}

    planned = service(route53).plan(session, SRE, "route53.flip-weights", params, "stage")

    reason = next(r["reason"] for r in planned.plan.rules if r["name"] == "target-region-healthy")  # type: ignore[union-attr]
    assert planned.blocked_by == ["target-region-healthy"]
    assert reason.startswith("unhealthy target us-west") and "5xx share 20.0%" in reason


def _plan_view() -> PlanView:
    weights = {"us-east": 20, "us-west": 80}
    return PlanView(
        "p1",
        "prod",
        {},
        {"zone_id": "Z1", "record": RECORD, "type": "A", "weights": {"us-east": 50, "us-west": 50}},
        {"zone_id": "Z1", "record": RECORD, "type": "A", "weights": weights},
        "sam",
        "test",
    )


def _list(stub: Stubber, **weights: int) -> None:
    stub.add_response(
        "list_resource_record_sets",
        {"ResourceRecordSets": _sets(**weights), "IsTruncated": False, "MaxItems": "100"},
    )


def _change_info(status: str) -> dict[str, Any]:
    return {
        "ChangeInfo": {
            "Id": "/change/C0123456789ABC",
            "Status": status,
            "SubmittedAt": datetime(2026, 1, 5, tzinfo=UTC),
        }
    }


def test_invalid_change_batch_messages_are_shown_and_nothing_counts_as_applied(
    session: Session,
) -> None:
    client = boto3.client("route53", region_name="us-east-1", **CREDS)
    message = (
        "Tried to create resource record set [name='api.example.com.', type='A', "
        "set-identifier='us-west'] but it already exists"
    )
    with Stubber(client) as stub:
        _list(stub)
        stub.add_client_error(
            "change_resource_record_sets",
            "InvalidChangeBatch",
            message,
            400,
            modeled_fields={"messages": [message]},
        )
        outcome = FlipDnsWeights(lambda: Route53(client)).apply(session, _plan_view(), live=True)

    assert not outcome.ok
    assert outcome.message == f"Route 53 refused the change: {message}"


def test_pending_is_waited_for_with_botocore_s_waiter_at_the_configured_delay(
    session: Session, tmp_path: Any
) -> None:
    client = boto3.client("route53", region_name="us-east-1", **CREDS)
    settings = make_settings(tmp_path, actions={"insync_poll_s": 0.01, "insync_timeout_s": 1})
    waits: list[tuple[str, dict[str, Any]]] = []
    get_waiter = client.get_waiter

    def spy(name: str) -> Any:
        waiter = get_waiter(name)
        wait = waiter.wait

        def recorded(**kwargs: Any) -> None:
            waits.append((name, dict(kwargs["WaiterConfig"])))
            wait(**kwargs)

        waiter.wait = recorded
        return waiter

    client.get_waiter = spy
    with Stubber(client) as stub:
        _list(stub)
        stub.add_response("change_resource_record_sets", _change_info("PENDING"))
        for status in ("PENDING", "PENDING", "INSYNC"):
            stub.add_response("get_change", _change_info(status), {"Id": "/change/C0123456789ABC"})
        _list(stub, east=20, west=80)
        provider = clients.route53(settings, client)
        outcome = FlipDnsWeights(lambda: provider).apply(session, _plan_view(), live=True)
        stub.assert_no_pending_responses()

    assert outcome.ok and outcome.verified, outcome.message
    assert outcome.detail["status"] == "INSYNC"
    assert waits == [("resource_record_sets_changed", {"Delay": 0.01, "MaxAttempts": 101})]


def test_a_change_still_pending_after_the_bounded_wait_is_unverified(session: Session) -> None:
    client = boto3.client("route53", region_name="us-east-1", **CREDS)
    with Stubber(client) as stub:
        _list(stub)
        stub.add_response("change_resource_record_sets", _change_info("PENDING"))
        for _ in range(3):  # 0.02 s at 0.01 s: the first GetChange and two more
            stub.add_response("get_change", _change_info("PENDING"))
        _list(stub)
        provider = Route53(client, poll_s=0.01, insync_timeout_s=0.02)
        outcome = FlipDnsWeights(lambda: provider).apply(session, _plan_view(), live=True)
        stub.assert_no_pending_responses()

    assert outcome.ok and outcome.verified is False
    assert "still PENDING" in outcome.message


def test_a_get_change_error_during_the_wait_is_unverified_not_a_crash(session: Session) -> None:
    client = boto3.client("route53", region_name="us-east-1", **CREDS)
    with Stubber(client) as stub:
        _list(stub)
        stub.add_response("change_resource_record_sets", _change_info("PENDING"))
        stub.add_client_error("get_change", "NoSuchChange", "no change C0123456789ABC", 404)
        outcome = FlipDnsWeights(lambda: Route53(client, poll_s=0.01)).apply(
            session, _plan_view(), live=True
        )

    assert outcome.ok and outcome.verified is False
    assert "not confirmed INSYNC (NoSuchChange: no change C0123456789ABC)" in outcome.message


def test_prior_request_not_complete_is_retried_by_botocore_alone(
    route53: Any, moto_url: str, session: Session
) -> None:
    zone, _ = create_weighted_record(route53)
    client = route53_client(moto_url, max_attempts=2)
    busy = throttle(
        client,
        "ChangeResourceRecordSets",
        code="PriorRequestNotComplete",
        message="The request was rejected because Route 53 was still processing a prior request.",
        times=1,
    )
    svc = service(client)
    planned = svc.plan(
        session, SRE, "route53.flip-weights", {"record": RECORD, "weights": "us-east=40"}, "stage"
    )
    assert planned.plan is not None

    applied = svc.apply(session, SRE, planned.plan.plan_id, reason="shift", live=True)

    assert applied.ok, applied.message
    assert (busy.calls, busy.sends) == (1, 2)  # our one call; botocore's second attempt landed
    assert read_weights(route53, zone) == {"us-east": 40, "us-west": 50}


def test_a_throttled_change_is_not_retried_by_our_code(
    route53: Any, moto_url: str, session: Session
) -> None:
    zone, _ = create_weighted_record(route53)
    client = route53_client(moto_url, max_attempts=2)
    svc = service(client)
    planned = svc.plan(
        session, SRE, "route53.flip-weights", {"record": RECORD, "weights": "us-east=40"}, "stage"
    )
    assert planned.plan is not None
    throttled = throttle(client, "ChangeResourceRecordSets")

    applied = svc.apply(session, SRE, planned.plan.plan_id, reason="shift", live=True)

    assert not applied.ok
    assert "Route 53 refused the change: Throttling: Rate exceeded" in applied.message
    assert (throttled.calls, throttled.sends) == (1, 2)
    assert read_weights(route53, zone) == {"us-east": 50, "us-west": 50}


def test_weighted_sets_are_followed_across_pages_by_set_identifier(session: Session) -> None:
    """Real Route 53 may end a page inside one name+type and then names the next set (moto
    does not: it ignores StartRecordIdentifier)."""
    client = boto3.client("route53", region_name="us-east-1", **CREDS)
    east, west = _sets()
    with Stubber(client) as stub:
        stub.add_response(
            "list_resource_record_sets",
            {
                "ResourceRecordSets": [east],
                "IsTruncated": True,
                "NextRecordName": RECORD,
                "NextRecordType": "A",
                "NextRecordIdentifier": "us-west",
                "MaxItems": "1",
            },
            {"HostedZoneId": "Z1", "StartRecordName": RECORD, "MaxItems": "1"},
        )
        stub.add_response(
            "list_resource_record_sets",
            {"ResourceRecordSets": [west], "IsTruncated": False, "MaxItems": "1"},
            {
                "HostedZoneId": "Z1",
                "StartRecordName": RECORD,
                "StartRecordType": "A",
                "StartRecordIdentifier": "us-west",
                "MaxItems": "1",
            },
        )
        sets = Route53(client, page_size=1).weighted_sets("Z1", RECORD)
        stub.assert_no_pending_responses()

    assert [rs["SetIdentifier"] for rs in sets] == ["us-east", "us-west"]


def test_our_validation_catches_batches_moto_would_accept() -> None:
    sets = [
        {"SetIdentifier": "us-east", "Weight": 256, "TTL": 60, "ResourceRecords": [{"Value": "a"}]},
        {
            "SetIdentifier": "us-east",
            "Weight": 10,
            "TTL": 300,
            "ResourceRecords": [{"Value": "b"}, {"Value": "c"}],
        },
    ]

    problems = validate_batch(sets)

    assert "duplicate SetIdentifier in the batch" in problems
    assert any("share one TTL" in p for p in problems)
    assert "us-east: weight 256 is outside 0–255" in problems
    assert "us-east: a weighted set holds exactly one value" in problems
    with pytest.raises(InvalidParams, match="not a whole number"):
        parse_weights("us-east=ten")


def test_a_name_held_by_two_zones_is_refused_unless_the_zone_is_given(
    route53: Any, session: Session
) -> None:
    zone, _ = create_weighted_record(route53)
    route53.create_hosted_zone(
        Name="example.com.",
        CallerReference="qd-private",
        HostedZoneConfig={"PrivateZone": True, "Comment": "split horizon"},
        VPC={"VPCRegion": "us-east-1", "VPCId": "vpc-12345678"},
    )
    svc = service(route53)
    params = {"record": RECORD, "weights": "us-east=40,us-west=60"}

    guessed = svc.plan(session, SRE, "route53.flip-weights", params, "stage")
    named = svc.plan(session, SRE, "route53.flip-weights", params | {"zone_id": zone}, "stage")

    assert not guessed.ok and "several hosted zones are named example.com." in guessed.message
    private = next(
        z["Id"].split("/")[-1]
        for z in route53.list_hosted_zones()["HostedZones"]
        if z["Config"]["PrivateZone"]
    )
    assert f"{zone} public" in guessed.message and f"{private} private" in guessed.message
    assert named.ok, named.message


def test_an_unreachable_route53_is_a_refusal_not_a_crash(session: Session) -> None:
    from botocore.config import Config

    client = boto3.client(
        "route53",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
        **CREDS,
    )
    params = {"record": RECORD, "weights": "us-east=40,us-west=60"}

    result = service(client).plan(session, SRE, "route53.flip-weights", params, "stage")
    odd_env = service(client).plan(session, SRE, "route53.flip-weights", params, "Prod; drop")

    assert not result.ok and result.message.startswith("Route 53: EndpointConnectionError")
    assert not odd_env.ok and "lower-case letters, digits or dashes" in odd_env.message
    assert audit_outcomes(session) == ["refused", "refused"]


def test_a_flip_is_blocked_while_the_error_budget_policy_says_freeze(
    route53: Any, session: Session
) -> None:
    from datetime import timedelta

    from store.ingest import upsert
    from store.models import SloSample
    from store.slo import SloDefinition

    create_weighted_record(route53)
    now = FIXED_NOW
    burning = [  # 5 % errors for two hours: both page windows burn far above 14.4x
        {
            "service": "gateway",
            "slo": "availability",
            "ts": now - timedelta(minutes=5 * k),
            "good": 950.0,
            "total": 1000.0,
        }
        for k in range(24)
    ]
    upsert(session, SloSample, burning, conflict=("service", "slo", "ts"))
    gateway = SloDefinition.model_validate(
        {
            "service": "gateway",
            "objective": 99.9,
            "window": "30d",
            "source": {"good": "sum(good)", "total": "sum(total)"},
        }
    )
    svc = service(route53, slos=(gateway,))

    planned = svc.plan(
        session,
        SRE,
        "route53.flip-weights",
        {"record": RECORD, "weights": "us-east=40,us-west=60"},
        "stage",
    )

    assert planned.blocked_by == ["error-budget-not-frozen"]
    reason = next(r["reason"] for r in planned.plan.rules if r["name"] == "error-budget-not-frozen")  # type: ignore[union-attr]
    assert reason.startswith("error-budget policy says freeze — gateway:")
