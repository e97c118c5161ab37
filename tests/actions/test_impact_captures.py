"""Impact preview judged by real OPA 1.9: the captured candidate bundle (`opa build`, hs256) and
the decisions OPA made with it (REST answers, decision-log bodies with `nd_builtin_cache`).

OPA made every captured decision with this very bundle, so replaying them on it must reproduce
OPA's answer for each one (objects, undefined, number literals and the recorded `time.now_ns`).
Edited copies of the same bundle then give flips whose expected count is read off OPA's own
answers (its `reasons`), not off our reading of the policy.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from actions import rego
from actions.bundle_pin import (
    MASKED,
    PinConfig,
    PinOpaBundle,
    RegistryPins,
    bundle_files,
    replay_decisions,
    same_document,
    verdict,
)
from collectors.opa import DecisionOptions, receive_decision_log
from console.context import AppContext
from console.http.policy import make_blueprint
from store.db import session_factory
from store.models import OpaDecision
from tests.conftest import CAPTURES, make_settings, peer_missing

BUNDLE = CAPTURES / "opa-bundles" / "bundles" / "hs256.tar.gz"
WIRE = CAPTURES / "opa-wire"
RECEIVED = datetime(2026, 12, 1, 16, 5, tzinfo=UTC)

VIEWER_READ_RULE = 'allow if {\n\tinput.user.role == "viewer"\n\tinput.action == "read"\n}\n'
POLICY = "src/policy.rego"


@pytest.fixture(scope="module")
def captures() -> Path:
    if not BUNDLE.is_file():
        peer_missing(f"the OPA captures are not at {CAPTURES}")
    return CAPTURES


@pytest.fixture(scope="module")
def candidate(captures: Path) -> dict[str, bytes]:
    return bundle_files(BUNDLE.read_bytes())


def logged_events() -> list[dict[str, Any]]:
    """Every decision-log event OPA posted (gzip bodies, byte-exact as received)."""
    bodies = sorted(WIRE.glob("decision-logs/*.json.gz")) + sorted(WIRE.glob("runs/*/bodies/*.gz"))
    return [event for body in bodies for event in json.loads(gzip.decompress(body.read_bytes()))]


def rest_decisions() -> list[OpaDecision]:
    """OPA's REST answers with the unmasked inputs that produced them, one per decision_id,
    carrying the `nd_builtin_cache` OPA logged for the same decision."""
    nd_cache = {e["decision_id"]: e.get("nd_builtin_cache") for e in logged_events()}
    calls = [
        call
        for path in sorted(WIRE.glob("decision-logs/*.opa-rest-calls.json"))
        + sorted(WIRE.glob("runs/*/queries.json"))
        for call in json.loads(path.read_text())
    ]
    seen: dict[str, OpaDecision] = {}
    for call in calls:
        answer = json.loads(call["response_body_raw"])
        body = json.loads(call.get("request_body") or "{}")
        decision = OpaDecision(
            decision_id=answer["decision_id"],
            path=urlsplit(call["path"]).path.removeprefix("/v1/data/"),
            input=body.get("input"),
            result=answer.get("result"),
            erased=[],
            masked=[],
        )
        decision.nd_builtin_cache = nd_cache[answer["decision_id"]]
        seen[decision.decision_id] = decision
    return list(seen.values())


def edited(files: dict[str, bytes], old: str, new: str) -> dict[str, bytes]:
    source = files[POLICY].decode()
    assert old in source
    return files | {POLICY: source.replace(old, new).encode()}


def test_rego_cpp_gives_opa_s_answer_for_every_captured_rest_decision(
    candidate: dict[str, bytes],
) -> None:
    decisions = rest_decisions()
    policy = rego.policy_from_bundle(candidate)
    queries = [
        rego.Query(d.path, d.input, d.input is not None, d.nd_builtin_cache) for d in decisions
    ]

    outcomes = rego.evaluate(policy, queries)

    kinds = {"object": 0, "boolean": 0, "undefined": 0}
    for decision, outcome in zip(decisions, outcomes, strict=True):
        if decision.result is None:
            assert outcome.status == "undefined", decision.decision_id
            kinds["undefined"] += 1
            continue
        assert outcome.status == "defined", (decision.decision_id, outcome.reason)
        assert same_document(outcome.value, decision.result), (decision.path, outcome.value)
        kinds["object" if isinstance(decision.result, dict) else "boolean"] += 1
    # 2 OPA processes × 7 calls, each: 2 objects, 4 booleans (one a GET, no input), 1 undefined
    assert kinds == {"object": 4, "boolean": 8, "undefined": 2}


def test_object_results_keep_opa_s_number_literals_and_recorded_time(
    candidate: dict[str, bytes],
) -> None:
    carol = next(d for d in rest_decisions() if isinstance(d.result, dict) and d.result["allow"])
    [outcome] = rego.evaluate(
        rego.policy_from_bundle(candidate),
        [rego.Query(carol.path, carol.input, True, carol.nd_builtin_cache)],
    )

    assert outcome.value["evaluated_at_ns"] == carol.nd_builtin_cache["time.now_ns"]["[]"]
    # OPA answered `"kilo":1e3,"price":1.50,"big":12345678901234567890`; data.json has them so
    assert outcome.value["limits"] == {
        "big": 12345678901234567890,
        "int": 42,
        "kilo": 1000,
        "neg": 0,
        "price": 1.5,
        "ten": 10,
    }


def test_replaying_opa_s_decisions_on_their_own_bundle_flips_and_changes_nothing(
    candidate: dict[str, bytes],
) -> None:
    report = replay_decisions(candidate, rest_decisions())

    assert (report.replayed, report.flipped, report.changed, report.not_evaluated) == (14, 0, 0, 0)


def test_without_the_nd_builtin_cache_every_object_result_would_look_changed(
    candidate: dict[str, bytes],
) -> None:
    decisions = rest_decisions()
    for decision in decisions:
        decision.nd_builtin_cache = None

    report = replay_decisions(candidate, decisions)

    assert (report.flipped, report.changed) == (0, 4)  # evaluated_at_ns is now, not OPA's


def test_flips_on_object_results_are_the_ones_opa_s_reasons_predict(
    candidate: dict[str, bytes],
) -> None:
    """Without the viewer-read rule, exactly the decisions OPA allowed *because* "viewer may
    read" (its own `reasons`) flip; the object results among them included."""
    decisions = rest_decisions()
    expected = {
        d.decision_id
        for d in decisions
        if isinstance(d.result, dict) and d.result["reasons"] == ["viewer may read"]
    }
    expected |= {  # boolean answers carry no reasons: OPA allowed a viewer, so the read rule did
        d.decision_id
        for d in decisions
        if d.result is True and (d.input or {}).get("user", {}).get("role") == "viewer"
    }

    report = replay_decisions(edited(candidate, VIEWER_READ_RULE, ""), decisions)

    assert len(expected) == 2 and report.replayed == 14
    assert (report.allow_to_deny, report.deny_to_allow) == (2, 0)
    assert {e["decision_id"] for e in report.examples} == expected
    assert all(e["path"] == "acme/authz/decision" for e in report.examples)
    # the whole object is replayed: the separate `reasons` rule still names the viewer read
    assert all(
        e["result"]["reasons"] == ["denied by default", "viewer may read"] for e in report.examples
    )


def test_a_changed_object_with_the_same_verdict_is_counted_as_changed_not_flipped(
    candidate: dict[str, bytes],
) -> None:
    decisions = rest_decisions()
    denied = [d for d in decisions if isinstance(d.result, dict) and not verdict(d.result)]

    report = replay_decisions(
        edited(candidate, '"denied by default"', '"no rule allows"'), decisions
    )

    assert len(denied) == 2
    assert (report.flipped, report.changed) == (0, len(denied))


@pytest.fixture
def logged(ctx: AppContext, captures: Path) -> Iterator[Session]:
    """Every captured decision-log body through the real receiver path into the store."""
    with ctx.session() as session:
        bodies = sorted(WIRE.glob("decision-logs/*.json.gz")) + sorted(
            WIRE.glob("runs/*/bodies/*.gz")
        )
        for body in bodies:
            receive_decision_log(
                session,
                body.read_bytes(),
                content_encoding="gzip",
                received_at=RECEIVED,
                limit=10_000_000,
                options=DecisionOptions(environment_label="env"),
            )
        session.flush()
        yield session


def test_masked_inputs_are_not_evaluated_and_the_preview_blocks(
    logged: Session, candidate: dict[str, bytes], tmp_path: Path
) -> None:
    """OPA logs the input after system.log.mask: replaying it would judge another input (the
    admin's role is gone), so those decisions are "not evaluated", never a false flip."""
    rows = list(logged.scalars(select(OpaDecision)))
    masked = [d for d in rows if d.erased or d.masked]

    report = replay_decisions(candidate, rows)
    action = PinOpaBundle([RegistryPins()], lambda _: None, PinConfig(replay_last=len(rows)))
    rule, preview = action._impact(logged, "acme", "stage", BUNDLE.read_bytes())

    assert len(rows) == 2278 and len(masked) == len(rows) - 4  # 2 GETs, 2 unmasked objects
    assert report.not_evaluated_reasons == {MASKED: len(masked)}
    assert (report.replayed, report.flipped) == (4, 0)
    # the store keeps `nd_builtin_cache`: the 2 objects' evaluated_at_ns is OPA's, unchanged
    assert report.changed == 0
    assert not rule.passed and "not evaluated" in rule.reason and "masked" in rule.reason
    assert preview["impact"]["not_evaluated"] == len(masked)


CAPTURED_TOKEN = "qd-test-bearer-token-not-secret"


def captured_log_posts() -> list[tuple[list[tuple[str, str]], bytes]]:
    """(headers as OPA sent them, body) of every captured decision-log POST."""
    posts = []
    for requests_file in sorted(WIRE.glob("runs/*/requests.jsonl")):
        for line in requests_file.read_text().splitlines():
            sent = json.loads(line)
            if sent["method"] == "POST" and sent["path"].startswith("/qd/logs"):
                body = (requests_file.parent / sent["body_file"]).read_bytes()
                posts.append(([tuple(h) for h in sent["headers"]], body))
    for request_file in sorted(WIRE.glob("decision-logs/*.request.json")):
        sent = json.loads(request_file.read_text())
        body_file = request_file.with_name(request_file.name.replace(".request.json", ".json.gz"))
        posts.append(([tuple(h) for h in sent["headers"]], body_file.read_bytes()))
    return posts


def test_object_results_with_time_now_ns_replay_unchanged_end_to_end_through_the_receiver(
    engine: Engine, tmp_path: Path, captures: Path
) -> None:
    """OPA's bodies, as sent (gzip, its headers), through `POST /ingest/opa/logs` into the store
    on both dialects; the impact preview then replays the stored `nd_builtin_cache`, so the
    object results that embed `time.now_ns` come back exactly as OPA logged them."""
    ctx = AppContext(
        settings=make_settings(
            tmp_path, opa={"logs_token": CAPTURED_TOKEN, "environment_label": "env"}
        ),
        engine=engine,
        sessions=session_factory(engine),
    )
    app = Flask("replay")
    app.register_blueprint(make_blueprint(ctx))
    client = app.test_client()
    for headers, body in captured_log_posts():
        forwarded = [(k, v) for k, v in headers if k.lower() not in ("host", "content-length")]
        response = client.post("/ingest/opa/logs", data=body, headers=forwarded)
        assert response.status_code == 200 and response.get_json()["rejected"] == 0

    with ctx.session() as session:
        rows = list(session.scalars(select(OpaDecision)))
        action = PinOpaBundle(
            [RegistryPins()],
            lambda _: None,
            PinConfig(replay_last=len(rows), max_not_evaluated_pct=100.0),
        )
        rule, preview = action._impact(session, "acme", "stage", BUNDLE.read_bytes())
        timed = [
            d
            for d in rows
            if isinstance(d.result, dict) and "time.now_ns" in (d.nd_builtin_cache or {})
        ]
        unmasked = [d for d in timed if not (d.erased or d.masked)]
        cacheless = [
            OpaDecision(
                decision_id=d.decision_id,
                path=d.path,
                input=d.input,
                result=d.result,
                erased=[],
                masked=[],
                nd_builtin_cache=None,
            )
            for d in unmasked
        ]

    assert len(rows) == 2278 and len(timed) == 4 and len(unmasked) == 2
    for decision in timed:  # stored as OPA logged it: the cache holds the result's own time
        assert decision.result["evaluated_at_ns"] == decision.nd_builtin_cache["time.now_ns"]["[]"]
    impact = preview["impact"]
    assert (impact["replayed"], impact["changed"], impact["allow_to_deny"]) == (4, 0, 0)
    assert impact["deny_to_allow"] == 0 and rule.passed, rule.reason
    # the control: the same two decisions without the stored cache change (now ≠ OPA's time)
    assert replay_decisions(bundle_files(BUNDLE.read_bytes()), cacheless).changed == 2


def test_the_not_evaluated_share_is_configurable(
    logged: Session, candidate: dict[str, bytes]
) -> None:
    rows = list(logged.scalars(select(OpaDecision)))
    action = PinOpaBundle(
        [RegistryPins()],
        lambda _: None,
        PinConfig(replay_last=len(rows), max_not_evaluated_pct=100.0),
    )

    rule, _ = action._impact(logged, "acme", "stage", BUNDLE.read_bytes())

    assert rule.passed, rule.reason


def test_a_builtin_rego_cpp_lacks_makes_every_decision_not_evaluated(
    candidate: dict[str, bytes],
) -> None:
    files = edited(
        candidate,
        "default allow := false\n",
        'default allow := false\n\nallow if http.send({"method": "get", "url": input.u}).body\n',
    )

    report = replay_decisions(files, rest_decisions())

    assert report.replayed == 0 and report.not_evaluated == 14
    assert list(report.not_evaluated_reasons) == [
        "calls http.send, which rego-cpp (regopy) does not implement"
    ]


def test_a_candidate_that_does_not_compile_is_not_evaluated(candidate: dict[str, bytes]) -> None:
    report = replay_decisions(edited(candidate, "allow if {", "allow if {{"), rest_decisions())

    assert report.replayed == 0 and report.not_evaluated == 14
    assert all("does not compile" in r for r in report.not_evaluated_reasons)


def test_an_engine_that_runs_out_of_time_evaluates_nothing_rather_than_guessing(
    candidate: dict[str, bytes],
) -> None:
    report = replay_decisions(candidate, rest_decisions(), timeout_s=0.001)

    assert report.replayed == 0 and report.not_evaluated == 14


def test_several_recorded_calls_of_one_builtin_cannot_be_replayed() -> None:
    policy = rego.Policy({"p.rego": "package p\n\nx := rand.intn(input.s, 10)\n"}, "{}")
    cache = {"rand.intn": {'["a",10]': 3, '["b",10]': 7}}

    one, several = rego.evaluate(
        policy,
        [
            rego.Query("p/x", {"s": "a"}, True, {"rand.intn": {'["a",10]': 3}}),
            rego.Query("p/x", {"s": "a"}, True, cache),
        ],
    )

    assert (one.status, one.value) == ("defined", 3)
    assert several.status == "not_evaluated" and "several calls" in several.reason
