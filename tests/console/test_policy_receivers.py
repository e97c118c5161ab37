"""The OPA receivers over real HTTP (werkzeug on loopback) with real gzip, on SQLite and
PostgreSQL: what OPA's decision_logs and status plugins would see, and what ends up stored."""

from __future__ import annotations

import gzip
import json
import os
import threading
import tracemalloc
import urllib.error
import urllib.request
import uuid
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, func, select
from werkzeug.serving import make_server

from console.context import AppContext
from console.http.policy import make_blueprint
from store.db import make_engine, session_factory
from store.migrate import upgrade
from store.models import BundlePin, IngestReject, OpaDecision, OpaStatusReport, SyncRun
from tests.conftest import CAPTURES, FIXED_NOW, FakeClock, make_settings

TOKEN = "opa-test-token-8c1f"
NOW = FIXED_NOW  # a fixed past instant: nothing here may depend on when the suite runs


def event(decision_id: str | None = None, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "decision_id": decision_id or str(uuid.uuid4()),
        "labels": {"id": "prod-opa-1", "version": "1.4.2", "environment": "prod"},
        "bundles": {"authz": {"revision": "r42"}},
        "path": "/acme/authz/allow",
        "input": {"user": {"name": "ana", "roles": ["sre"]}, "method": "GET"},
        "result": {"allow": True},
        "erased": ["/input/user/token"],
        "requested_by": "10.0.0.7:53412",
        "metrics": {"timer_rego_query_eval_ns": 52000},
        "timestamp": (NOW - timedelta(seconds=5)).isoformat().replace("+00:00", "Z"),
    }
    body.update(over)
    return body


class Receiver:
    """A running HTTP server with the policy blueprint, and a tiny client for it."""

    def __init__(self, ctx: AppContext) -> None:
        app = Flask("policy-test")
        app.register_blueprint(make_blueprint(ctx))
        self.ctx = ctx
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def post(
        self,
        path: str,
        body: bytes,
        *,
        token: str | None = TOKEN,
        gzipped: bool = True,
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=body, headers=headers, method="POST")
        return self._send(req)

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        return self._send(urllib.request.Request(self.url + path))

    @staticmethod
    def _send(req: urllib.request.Request) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join()


def make_ctx(tmp_path: Path, engine: Engine, **opa: Any) -> AppContext:
    settings = make_settings(tmp_path, opa={"logs_token": TOKEN, **opa})
    return AppContext(settings=settings, engine=engine, sessions=session_factory(engine))


@pytest.fixture
def receiver(tmp_path: Path, engine: Engine) -> Iterator[Receiver]:
    rx = Receiver(make_ctx(tmp_path, engine, max_decompressed_bytes=1024 * 1024))
    yield rx
    rx.close()


def count(ctx: AppContext, model: Any) -> int:
    with ctx.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def gz(value: Any) -> bytes:
    return gzip.compress(json.dumps(value).encode())


def test_valid_batch_is_stored_and_the_same_batch_again_adds_no_rows(receiver: Receiver) -> None:
    batch = [event() for _ in range(10)]

    first = receiver.post("/ingest/opa/logs", gz(batch))
    again = receiver.post("/ingest/opa/logs", gz(batch))

    assert first == (
        200,
        {"stored": 10, "duplicates": 0, "rejected": 0, "ignored": 0, "rejects": []},
    )
    assert again[0] == 200
    assert again[1]["stored"] == 0 and again[1]["duplicates"] == 10
    assert count(receiver.ctx, OpaDecision) == 10
    with receiver.ctx.session() as session:
        row = session.scalars(select(OpaDecision).limit(1)).one()
    assert row.path == "acme/authz/allow"  # leading slash tolerated
    assert row.allowed is True and row.environment == "prod" and row.opa_version == "1.4.2"
    assert row.bundles == {"authz": "r42"} and row.erased == ["/input/user/token"]


def test_two_bad_events_among_ten_are_dead_lettered_and_the_rest_stored(
    receiver: Receiver,
) -> None:
    batch = [event() for _ in range(10)]
    batch[3] = {"labels": {"id": "prod-opa-1"}, "path": "p", "timestamp": "2025-11-12T10:00:00Z"}
    batch[7] = event(timestamp="yesterday")

    status, body = receiver.post("/ingest/opa/logs", gz(batch))

    assert status == 200
    assert (body["stored"], body["rejected"]) == (8, 2)
    assert body["rejects"][0].startswith("[3] decision_id")
    assert body["rejects"][1].startswith("[7] timestamp")
    with receiver.ctx.session() as session:
        rejects = session.scalars(select(IngestReject).order_by(IngestReject.item_index)).all()
        run = session.scalars(select(SyncRun).where(SyncRun.source == "opa.logs")).one()
    assert [(r.item_index, r.reason.split(":")[0]) for r in rejects] == [
        (3, "decision_id"),
        (7, "timestamp"),
    ]
    assert (run.status, run.rows_stored, run.rows_rejected) == ("partial", 8, 2)


def test_plain_json_is_accepted_too(receiver: Receiver) -> None:
    status, body = receiver.post("/ingest/opa/logs", json.dumps([event()]).encode(), gzipped=False)
    assert (status, body["stored"]) == (200, 1)


def test_corrupt_gzip_is_refused_with_a_reason_and_dead_lettered(receiver: Receiver) -> None:
    broken = gz([event()])[:-12] + b"garbage!"

    status, body = receiver.post("/ingest/opa/logs", broken)

    assert status == 400
    assert "gzip" in body["error"]
    assert count(receiver.ctx, OpaDecision) == 0
    with receiver.ctx.session() as session:
        reject = session.scalars(select(IngestReject)).one()
    assert reject.source == "opa.logs" and "gzip" in reject.reason


def _bomb(inflated: int) -> bytes:
    """A gzip member of ``inflated`` zero bytes, built in steps (never held inflated)."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [deflater.compress(block) for _ in range(inflated // len(block))]
    parts.append(deflater.flush())
    return b"".join(parts)


def test_gzip_bomb_is_refused_413_without_inflating_it(receiver: Receiver) -> None:
    bomb = _bomb(256 * 1024 * 1024)  # ~250 KB on the wire, 256 MiB inflated
    tracemalloc.start()
    try:
        status, body = receiver.post("/ingest/opa/logs", bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert status == 413
    assert "limit" in body["error"]
    assert peak < 16 * 1024 * 1024  # the 1 MiB limit plus buffers, nowhere near 256 MiB
    assert count(receiver.ctx, OpaDecision) == 0


def test_compressed_body_over_the_limit_is_refused_413(tmp_path: Path, engine: Engine) -> None:
    rx = Receiver(make_ctx(tmp_path, engine, max_body_bytes=2048))
    try:
        noise = [event(input={"blob": os.urandom(1500).hex()}) for _ in range(4)]
        status, body = rx.post("/ingest/opa/logs", gz(noise))
    finally:
        rx.close()
    assert status == 413 and "2048 byte limit" in body["error"]


def test_wrong_or_missing_token_is_401_and_stores_nothing(receiver: Receiver) -> None:
    wrong = receiver.post("/ingest/opa/logs", gz([event()]), token="not-the-token")
    missing = receiver.post("/ingest/opa/logs", gz([event()]), token=None)

    assert wrong[0] == 401 and missing[0] == 401
    assert "token" in wrong[1]["error"]
    assert count(receiver.ctx, OpaDecision) == 0


def test_database_unavailable_answers_503_then_the_retry_stores_everything(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    engine = make_engine(f"sqlite:///{folder / 'store.db'}")
    upgrade(engine)
    rx = Receiver(make_ctx(tmp_path, engine))
    batch = [event() for _ in range(10)]
    try:
        engine.dispose()
        folder.rename(tmp_path / "db-away")  # the database file is gone: connections fail
        down = rx.post("/ingest/opa/logs", gz(batch))
        (tmp_path / "db-away").rename(folder)
        engine.dispose()
        up = rx.post("/ingest/opa/logs", gz(batch))
    finally:
        rx.close()

    assert down[0] == 503 and "retry" in down[1]["error"]
    assert up[0] == 200 and up[1]["stored"] == 10
    assert count(rx.ctx, OpaDecision) == 10
    engine.dispose()


def test_posted_decision_is_searchable_by_id_as_soon_as_it_is_acknowledged(
    receiver: Receiver,
) -> None:
    decision = event(input={"user": {"name": "<script>alert(1)</script>"}})

    status, _ = receiver.post("/ingest/opa/logs", gz([decision]))
    found = receiver.get(f"/api/decisions?decision_id={decision['decision_id']}")

    assert status == 200
    assert found[0] == 200
    [row] = found[1]["decisions"]
    assert row["decision_id"] == decision["decision_id"]
    assert row["input"] == decision["input"] and row["allowed"] is True
    assert row["timestamp"].endswith("Z")


def test_status_reports_keep_history_and_drive_the_drift_api(receiver: Receiver) -> None:
    with receiver.ctx.session() as session:
        session.add(
            BundlePin(
                bundle="authz",
                environment="prod",
                revision="r43",
                pinned_at=NOW - timedelta(days=1),
                pinned_by="bo",
            )
        )

    def report(instance: str, revision: str, **extra: Any) -> bytes:
        bundle = {
            "name": "authz",
            "active_revision": revision,
            "last_successful_activation": "2025-11-12T10:00:00Z",
            **extra,
        }
        return json.dumps(
            {"labels": {"id": instance, "environment": "prod"}, "bundles": {"authz": bundle}}
        ).encode()

    a = receiver.post("/ingest/opa/status", report("prod-opa-1", "r43"), gzipped=False)
    b = receiver.post(
        "/ingest/opa/status",
        report("prod-opa-2", "r42", code="bundle_error", errors=["HTTP 500"]),
        gzipped=False,
    )
    drift = receiver.get("/api/policy/drift?environment=prod")

    assert a[0] == b[0] == 200 and a[1]["stored"] == 1
    assert count(receiver.ctx, OpaStatusReport) == 2
    assert drift[0] == 200
    assert drift[1]["drift"] == 1 and drift[1]["drifted_instances"] == ["prod-opa-2"]
    by_instance = {r["instance_id"]: r for r in drift[1]["rows"]}
    assert by_instance["prod-opa-2"]["pinned_revision"] == "r43"
    assert by_instance["prod-opa-2"]["code"] == "bundle_error"


def test_the_identity_label_setting_keys_status_and_decisions_and_drift_shows_staleness(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`QUARTERDECK_OPA__INSTANCE_LABEL` reaches both receivers; `/api/policy/drift` names each
    OPA by that label's value and says which are stale, how long silent, at what interval."""
    ctx = make_ctx(
        tmp_path, engine, instance_label="pod", stale_after_intervals=2.0, stale_min_s=60.0
    )
    clock = FakeClock(NOW)
    monkeypatch.setattr("console.http.policy.utcnow", clock)
    rx = Receiver(ctx)
    with ctx.session() as session:
        session.add(
            BundlePin(
                bundle="authz",
                environment="prod",
                revision="r43",
                pinned_at=NOW - timedelta(days=1),
                pinned_by="bo",
            )
        )

    def report(process: str, pod: str, revision: str, at: Any) -> int:
        clock.now = at
        labels = {"id": process, "pod": pod, "instance": "ignored", "environment": "prod"}
        body = {"labels": labels, "bundles": {"authz": {"active_revision": revision}}}
        return rx.post("/ingest/opa/status", json.dumps(body).encode(), gzipped=False)[0]

    try:
        codes = [
            report("uuid-a1", "opa-a", "r43", NOW - timedelta(minutes=30)),
            report("uuid-a1", "opa-a", "r43", NOW - timedelta(minutes=29)),  # then silence
            report("uuid-b1", "opa-b", "r42", NOW - timedelta(minutes=2)),
            report("uuid-b2", "opa-b", "r42", NOW - timedelta(minutes=1)),  # restarted
        ]
        logged = rx.post(
            "/ingest/opa/logs",
            gz([event(labels={"id": "uuid-b2", "pod": "opa-b", "environment": "prod"})]),
        )
        drift = rx.get("/api/policy/drift?environment=prod&as_of=" + NOW.isoformat()[:19] + "Z")
    finally:
        rx.close()
    with ctx.session() as session:
        decided_by = session.scalar(select(OpaDecision.instance_id))

    assert codes == [200] * 4 and logged[0] == 200 and decided_by == "opa-b"
    assert drift[0] == 200
    body = drift[1]
    by_instance = {r["instance_id"]: r for r in body["rows"]}
    assert set(by_instance) == {"opa-a", "opa-b"}  # the pod label's values, one per OPA
    a, b = by_instance["opa-a"], by_instance["opa-b"]
    assert (a["stale"], a["drifted"], a["silent_s"], a["interval_s"]) == (True, False, 1740, 60)
    assert (b["stale"], b["drifted"], b["silent_s"], b["interval_s"]) == (False, True, 60, 60)
    assert body["drifted_instances"] == ["opa-b"] and body["stale_instances"] == ["opa-a"]
    assert body["drift"] == 1


def test_decisions_api_pages_with_a_cursor_and_searches_full_text(receiver: Receiver) -> None:
    batch = [
        event(
            timestamp=(NOW - timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
            input={"user": {"name": "ana" if i % 5 else "zoltan"}, "resource": f"exports-{i}"},
            result={"allow": i % 2 == 0},
        )
        for i in range(25)
    ]
    receiver.post("/ingest/opa/logs", gz(batch))

    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        status, body = receiver.get(f"/api/decisions?limit=10{cursor}")
        assert status == 200
        seen += [d["decision_id"] for d in body["decisions"]]
        pages += 1
        if not body["next_cursor"]:
            break
        cursor = f"&cursor={body['next_cursor']}"
    text = receiver.get("/api/decisions?q=zoltan&allowed=allow")

    assert pages == 3
    assert seen == [e["decision_id"] for e in batch]  # newest first, no repeats or gaps
    assert {d["input"]["user"]["name"] for d in text[1]["decisions"]} == {"zoltan"}
    assert len(text[1]["decisions"]) == 3  # i = 0, 10, 20


def test_decisions_api_says_what_is_wrong_with_a_query(receiver: Receiver) -> None:
    bad_date = receiver.get("/api/decisions?since=2025-13-01")
    unknown = receiver.get("/api/decisions?colour=red")
    bad_cursor = receiver.get("/api/decisions?cursor=nonsense")
    injection = receiver.get("/api/decisions?path=x%27%20OR%201%3D1--&q=%22%20OR%20*")

    assert bad_date[0] == 400 and "since" in bad_date[1]["problems"][0]
    assert unknown[0] == 400 and "colour: unknown parameter" in unknown[1]["problems"][0]
    assert bad_cursor[0] == 400 and "cursor" in bad_cursor[1]["error"]
    assert injection[0] in (200, 400)
    assert injection[1].get("decisions", []) == []


def test_fields_the_store_cannot_hold_reject_the_event_not_the_chunk(receiver: Receiver) -> None:
    batch = [event() for _ in range(4)]
    batch[1]["labels"] = {"id": "x" * 300}
    batch[2]["path"] = "acme/\x00/allow"

    status, body = receiver.post("/ingest/opa/logs", gz(batch))

    # On PostgreSQL either would fail the whole INSERT, and OPA would re-send it forever.
    assert status == 200
    assert (body["stored"], body["rejected"]) == (2, 2)
    assert body["rejects"] == [
        "[1] labels.id: longer than 200 characters",
        "[2] path: contains a NUL character (\\u0000), which PostgreSQL cannot store",
    ]


# --------------------------------------------------------------------------------------------
# Poison-proof: one event of each kind the store cannot hold, over HTTP, on both dialects
# --------------------------------------------------------------------------------------------


def test_chunk_with_every_poison_kind_is_2xx_valid_stored_poison_dead_lettered(
    tmp_path: Path, engine: Engine
) -> None:
    receiver = Receiver(make_ctx(tmp_path, engine))  # the default 64 MiB inflated limit
    try:
        assert_poison_chunk_round_trip(receiver)
    finally:
        receiver.close()


def assert_poison_chunk_round_trip(receiver: Receiver) -> None:
    valid = [event() for _ in range(3)]
    deep_input = '{"a":' * 100_000 + "1" + "}" * 100_000
    poison = {
        "deep": json.dumps(event()).replace(
            '"input": {', '"input": {"deep": ' + deep_input + ", ", 1
        ),
        "nul": json.dumps(event(input={"user": "an\x00a"})),
        "surrogate": json.dumps(event()).replace('"allow": true', '"allow": true, "x": "\\ud800"'),
        "oversize": json.dumps(event(input={"blob": "x" * (1024 * 1024 + 1)})),
    }
    text = (
        "[" + ",".join([json.dumps(valid[0]), *poison.values(), *map(json.dumps, valid[1:])]) + "]"
    )
    body = gzip.compress(text.encode())

    first = receiver.post("/ingest/opa/logs", body)
    again = receiver.post("/ingest/opa/logs", body)

    assert first[0] == 200, first[1]
    assert (first[1]["stored"], first[1]["rejected"]) == (3, 4)
    assert [r.split("]")[0] for r in first[1]["rejects"]] == ["[1", "[2", "[3", "[4"]
    assert "nested deeper than" in first[1]["rejects"][0]
    assert "input: contains a NUL character" in first[1]["rejects"][1]
    assert "result: contains a lone surrogate" in first[1]["rejects"][2]
    assert "limit per item" in first[1]["rejects"][3]
    assert again[0] == 200
    assert (again[1]["stored"], again[1]["duplicates"], again[1]["rejected"]) == (0, 3, 4)
    assert count(receiver.ctx, OpaDecision) == 3
    assert count(receiver.ctx, IngestReject) == 4


# --------------------------------------------------------------------------------------------
# Replay: every decision-log POST a real OPA 1.9 sent, byte-exact (gzip) with its own headers
# --------------------------------------------------------------------------------------------

WIRE = CAPTURES / "opa-wire"
CAPTURED_TOKEN = "qd-test-bearer-token-not-secret"


def captured_log_posts() -> list[tuple[str, list[tuple[str, str]], bytes]]:
    """(name, headers as sent, body) of every captured `POST /qd/logs`."""
    posts = []
    for requests_file in sorted(WIRE.glob("runs/*/requests.jsonl")):
        for line in requests_file.read_text().splitlines():
            sent = json.loads(line)
            if sent["method"] == "POST" and sent["path"].startswith("/qd/logs"):
                body = (requests_file.parent / sent["body_file"]).read_bytes()
                name = f"{requests_file.parent.name}/{sent['body_file']}"
                posts.append((name, [tuple(h) for h in sent["headers"]], body))
    for request_file in sorted(WIRE.glob("decision-logs/*.request.json")):
        sent = json.loads(request_file.read_text())
        body_file = request_file.with_name(request_file.name.replace(".request.json", ".json.gz"))
        posts.append((body_file.name, [tuple(h) for h in sent["headers"]], body_file.read_bytes()))
    return posts


def test_every_captured_opa_decision_log_post_is_stored_as_opa_sent_it(
    tmp_path: Path, engine: Engine
) -> None:
    posts = captured_log_posts()
    if not posts:
        from tests.conftest import peer_missing

        peer_missing(f"the OPA wire captures are not at {WIRE}")
    assert len(posts) >= 130  # 128 from the four runs + the two query-phase bodies
    ctx = AppContext(
        settings=make_settings(tmp_path, opa={"logs_token": CAPTURED_TOKEN}),
        engine=engine,
        sessions=session_factory(engine),
    )
    app = Flask("replay")
    app.register_blueprint(make_blueprint(ctx))
    client = app.test_client()
    expected: dict[str, dict[str, Any]] = {}
    for name, headers, body in posts:
        sent_events = json.loads(gzip.decompress(body))  # what OPA meant, decoded independently
        for sent in sent_events:
            expected[sent["decision_id"]] = sent
        forwarded = [(k, v) for k, v in headers if k.lower() not in ("host", "content-length")]
        assert ("Authorization", f"Bearer {CAPTURED_TOKEN}") in forwarded

        response = client.post("/ingest/opa/logs", data=body, headers=forwarded)

        assert response.status_code == 200, (name, response.get_json())
        answer = response.get_json()
        assert answer["rejected"] == 0, (name, answer["rejects"])
        assert answer["stored"] + answer["duplicates"] == len(sent_events), name
    with ctx.session() as session:
        rows = {d.decision_id: d for d in session.scalars(select(OpaDecision))}
    assert set(rows) == set(expected)
    assert len(rows) == 2278  # unique decisions across all captured bodies
    for decision_id, sent in expected.items():
        row = rows[decision_id]
        result = sent.get("result")  # undefined decisions carry no `result` key
        allowed = result if isinstance(result, bool) else None
        if isinstance(result, dict) and isinstance(result.get("allow"), bool):
            allowed = result["allow"]
        # who sent it: the identity label (default `instance`), not the per-process labels.id
        assert (row.path, row.instance_id, row.opa_version) == (
            sent["path"],
            sent["labels"]["instance"],
            sent["labels"]["version"],
        )
        assert row.nd_builtin_cache == sent["nd_builtin_cache"]  # `{}` unless a builtin ran
        assert row.bundles == {"acme": sent["bundles"]["acme"]["revision"]}
        assert row.allowed is allowed and row.result == result
        assert row.input == sent.get("input")
        assert row.erased == sent.get("erased", []) and row.masked == sent.get("masked", [])
        assert row.requested_by == sent["requested_by"]
        assert row.timestamp.isoformat()[:26] == sent["timestamp"][:26]
    assert {r.instance_id for r in rows.values()} == {"opa-stage-1"}  # 4 OPA processes, one OPA
    recorded = [r for r in rows.values() if r.nd_builtin_cache]
    assert len(recorded) == 4 and all("time.now_ns" in r.nd_builtin_cache for r in recorded)


def test_every_captured_opa_status_post_is_stored_as_opa_sent_it(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every status body OPA 1.9 posted (byte-exact, not gzipped, with its own headers) through
    `POST /ingest/opa/status`: one row per bundle, keyed on the `instance` label, `labels.id`
    kept as process_id, the bundle's revision/error and the decision-log state as reported."""
    requests = sorted((WIRE / "status").glob("*.request.json"))
    if not requests:
        from tests.conftest import peer_missing

        peer_missing(f"the OPA status captures are not at {WIRE / 'status'}")
    ctx = make_ctx(tmp_path, engine, status_token=CAPTURED_TOKEN, environment_label="env")
    clock = FakeClock(NOW)
    monkeypatch.setattr("console.http.policy.utcnow", clock)
    client_app = Flask("status-replay")
    client_app.register_blueprint(make_blueprint(ctx))
    client = client_app.test_client()
    for request_file in requests:
        sent = json.loads(request_file.read_text())
        body = request_file.with_name(request_file.name.replace(".request.json", ".raw.json"))
        raw = body.read_bytes()
        headers = [
            (k, v) for k, v in sent["headers"] if k.lower() not in ("host", "content-length")
        ]
        assert not any(k.lower() == "content-encoding" for k, _ in headers)  # OPA never gzips it
        clock.now = clock.now + timedelta(seconds=1)

        response = client.post("/ingest/opa/status", data=raw, headers=headers)

        report = json.loads(raw)
        bundles = report.get("bundles") or {}
        assert response.status_code == 200, (request_file.name, response.get_json())
        assert response.get_json()["stored"] == len(bundles), request_file.name
        assert response.get_json()["rejected"] == 0, request_file.name
        with ctx.session() as session:
            rows = session.scalars(
                select(OpaStatusReport).where(OpaStatusReport.reported_at == clock.now)
            ).all()
        assert len(rows) == len(bundles), request_file.name
        for row in rows:
            info = bundles[row.bundle]
            labels = report["labels"]
            assert (row.instance_id, row.process_id, row.environment) == (
                labels["instance"],
                labels["id"],
                labels["env"],
            )
            assert row.active_revision == info.get("active_revision")
            assert row.code == info.get("code") and row.message == info.get("message")
            assert row.decision_logs is not None
            assert row.decision_logs["state"] == report["plugins"]["decision_logs"]["state"]
            assert row.decision_logs.get("code") == (report.get("decision_logs") or {}).get("code")
    assert len(requests) == 10
    with ctx.session() as session:
        instances = set(session.scalars(select(OpaStatusReport.instance_id)))
        processes = set(session.scalars(select(OpaStatusReport.process_id)))
    assert instances == {"opa-stage-1"} and len(processes) == 4  # 4 OPA processes, one OPA
