"""Egress HTTP over loopback against the real Flask app: export ingest, error-budget gates,
signed evidence downloads (token refusals, watermark headers, in-file ids, 429 not 5xx) and the
Redis-shared download limit."""

from __future__ import annotations

import io
import json
import threading
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import flask
import pytest
import requests
from sqlalchemy import func, select

from console import evidence_service as service
from console.app import create_app
from console.context import AppContext
from console.http.egress import make_blueprint
from egress.limiter import MemoryLimiter, RedisLimiter
from egress.tokens import issue_token
from store.ingest import upsert
from store.migrate import upgrade
from store.models import ExportEvent, SloSample
from tests.conftest import make_settings, peer_missing

INGEST_TOKEN = "exports-ingest-token-for-tests"
SECRET = "download-token-secret-for-tests"
T = datetime(2025, 11, 18, 12, 0, tzinfo=UTC)


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve a WSGI app on a loopback port in a thread; yield its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


@pytest.fixture
def egress_ctx(tmp_path) -> Iterator[AppContext]:
    settings = make_settings(
        tmp_path,
        exports={"ingest_token": INGEST_TOKEN, "token_secret": SECRET, "rate_limit": 3},
    )
    ctx = AppContext.from_settings(settings)
    upgrade(ctx.engine)
    yield ctx
    ctx.engine.dispose()


@pytest.fixture
def console_url(egress_ctx) -> Iterator[str]:
    with serve(create_app(egress_ctx).server) as url:
        yield url


def _line(n: int, **overrides: object) -> str:
    line: dict[str, object] = {
        "event_id": f"e{n}",
        "export_id": f"exp-{n}",
        "user": "ana",
        "tenant": "acme",
        "time": "2025-11-12T10:00:00Z",
        "route": f"/exports/exp-{n}/download",
        "status": 200,
        "token": {"present": True, "valid": True, "scope": "export:read"},
        "watermark": {"headers": True},
    }
    line.update(overrides)
    return json.dumps(line)


def _count(ctx: AppContext, model: Any = ExportEvent) -> int:
    with ctx.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


# --------------------------------------------------------------------------------------------
# POST /ingest/exports
# --------------------------------------------------------------------------------------------


def test_ingest_needs_the_bearer_token(console_url, egress_ctx):
    missing = requests.post(f"{console_url}/ingest/exports", data=_line(1), timeout=10)
    wrong = requests.post(
        f"{console_url}/ingest/exports",
        data=_line(1),
        headers={"Authorization": "Bearer nope"},
        timeout=10,
    )
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert _count(egress_ctx) == 0


def test_malformed_line_refuses_the_request_naming_line_and_field(console_url, egress_ctx):
    body = "\n".join([_line(1), _line(2, status="OK"), _line(3, bytes="lots")])

    response = requests.post(
        f"{console_url}/ingest/exports",
        data=body,
        headers={"Authorization": f"Bearer {INGEST_TOKEN}"},
        timeout=10,
    )

    assert response.status_code == 400
    assert response.json()["problems"] == [
        "line 2: status: expected int, got str",
        "line 3: bytes: expected a non-negative integer, got 'lots'",
    ]
    assert _count(egress_ctx) == 0


def test_retried_batch_adds_no_rows(console_url, egress_ctx):
    body = "\n".join(_line(n) for n in range(5))
    headers = {"Authorization": f"Bearer {INGEST_TOKEN}"}

    first = requests.post(f"{console_url}/ingest/exports", data=body, headers=headers, timeout=10)
    retry = requests.post(f"{console_url}/ingest/exports", data=body, headers=headers, timeout=10)

    assert first.json() | {} == {
        "lines": 5,
        "stored": 5,
        "duplicates": 0,
        "rejected": 0,
        "ignored": 0,
        "rejects": [],
    }
    assert (retry.status_code, retry.json()["stored"], retry.json()["duplicates"]) == (200, 0, 5)
    assert _count(egress_ctx) == 5


# --------------------------------------------------------------------------------------------
# GET /api/gates/<service>
# --------------------------------------------------------------------------------------------


def _slo_steps(ctx: AppContext, bad_at_end: float) -> None:
    rows = [
        {
            "service": "gateway",
            "slo": "availability",
            "ts": T - k * timedelta(minutes=5),
            "total": 1000.0,
            "good": 1000.0 - (bad_at_end if k < 12 else 0.0),
        }
        for k in range(100)
    ]
    # An error-free day long ago keeps the 30-day budget from being spent by the burst alone.
    rows.append(
        {
            "service": "gateway",
            "slo": "availability",
            "ts": T - timedelta(days=10),
            "total": 1e8,
            "good": 1e8,
        }
    )
    with ctx.session() as session:
        upsert(session, SloSample, rows, conflict=("service", "slo", "ts"), update=("good",))


def test_gate_is_normal_then_423_when_the_policy_freezes(console_url, egress_ctx):
    _slo_steps(egress_ctx, bad_at_end=1.0)  # burn 1× on 99.9 %: within budget
    normal = requests.get(
        f"{console_url}/api/gates/gateway", params={"at": T.isoformat()}, timeout=10
    )

    _slo_steps(egress_ctx, bad_at_end=50.0)  # burn 50× over the last hour: page alert
    frozen = requests.get(
        f"{console_url}/api/gates/gateway", params={"at": T.isoformat()}, timeout=10
    )

    assert normal.status_code == 200
    assert normal.json()["state"] == "normal"
    assert frozen.status_code == 423
    body = frozen.json()
    assert body["state"] == "freeze"
    assert body["reason"].startswith("gateway/availability: page burn alert 1h/5m × 14.4")
    assert body["slos"][0]["burn_rates"]["1h"] == pytest.approx(50.0)


def test_gate_for_an_unknown_service_is_404_and_a_bad_instant_400(console_url):
    unknown = requests.get(f"{console_url}/api/gates/nope", timeout=10)
    bad = requests.get(f"{console_url}/api/gates/gateway", params={"at": "soon"}, timeout=10)
    assert (unknown.status_code, bad.status_code) == (404, 400)


# --------------------------------------------------------------------------------------------
# Signed evidence downloads
# --------------------------------------------------------------------------------------------


@pytest.fixture
def pack_id(egress_ctx) -> str:
    return service.build_pack(egress_ctx, "sprint-27", user="builder", render=False).pack_id


@contextmanager
def download_server(ctx: AppContext, limiter: Any) -> Iterator[str]:
    app = flask.Flask("egress-test")
    app.register_blueprint(make_blueprint(ctx, limiter=limiter))
    with serve(app) as url:
        yield url


def _url(base: str, pack: str, token: str) -> str:
    return f"{base}/evidence/packs/{pack}/download?token={token}"


def test_refused_tokens_expiry_scope_signature_and_replay_after_expiry(egress_ctx, pack_id):
    scope = service.DOWNLOAD_SCOPE + pack_id
    now = datetime.now(UTC).timestamp()
    expired = issue_token(SECRET, sub="ana", scope=scope, ttl_s=60, now=now - 120)
    other_scope = issue_token(SECRET, sub="ana", scope=service.DOWNLOAD_SCOPE + "ev-x", ttl_s=60)
    wrong_key = issue_token("another-secret", sub="ana", scope=scope, ttl_s=60)
    replayed = issue_token(SECRET, sub="ana", scope=scope, ttl_s=60, now=now - 61)  # was valid

    with download_server(egress_ctx, MemoryLimiter(limit=100, window_s=60)) as base:
        answers = {
            name: requests.get(_url(base, pack_id, token), timeout=30)
            for name, token in {
                "expired": expired,
                "scope": other_scope,
                "signature": wrong_key,
                "replay": replayed,
                "garbage": "not-a-token",
            }.items()
        }

    assert {k: r.status_code for k, r in answers.items()} == dict.fromkeys(answers, 403)
    assert answers["expired"].json()["error"] == "token refused: expired"
    assert answers["replay"].json()["error"] == "token refused: expired"
    assert answers["scope"].json()["error"] == "token refused: wrong scope"
    assert answers["signature"].json()["error"] == "token refused: bad signature"
    assert all("X-Export-Id" not in r.headers for r in answers.values())
    with egress_ctx.session() as session:
        states = session.scalars(select(ExportEvent.token_state)).all()
    assert sorted(states) == ["expired", "expired", "invalid", "invalid", "invalid"]


def test_download_carries_watermark_headers_and_in_file_ids(egress_ctx, pack_id):
    path, _ = service.signed_download_url(egress_ctx, pack_id, user="ana")

    with download_server(egress_ctx, MemoryLimiter(limit=100, window_s=60)) as base:
        response = requests.get(base + path, timeout=60)

    assert response.status_code == 200
    export_id = response.headers["X-Export-Id"]
    assert response.headers["X-Export-User"] == "ana"
    assert export_id.startswith(pack_id + ".")
    stamped = datetime.fromisoformat(response.headers["X-Export-Timestamp"].replace("Z", "+00:00"))
    assert abs((stamped - datetime.now(UTC)).total_seconds()) < 3600
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        names = zf.namelist()
        unmarked = [
            n for n in names if export_id.encode() not in zf.read(n) or b"ana" not in zf.read(n)
        ]
    assert "MANIFEST.json" in names and "goals.html" in names
    assert unmarked == []
    with egress_ctx.session() as session:
        event = session.scalars(select(ExportEvent)).one()
    assert (event.export_id, event.user, event.status, event.token_state, event.watermarked) == (
        export_id,
        "ana",
        200,
        "valid",
        True,
    )


def test_burst_of_downloads_gets_429_with_retry_after_and_no_5xx(egress_ctx, pack_id):
    path, _ = service.signed_download_url(egress_ctx, pack_id, user="ana")
    limiter = MemoryLimiter(limit=3, window_s=60, clock=lambda: 1_000_000.0)

    with download_server(egress_ctx, limiter) as base:
        answers = [requests.get(base + path, timeout=60) for _ in range(6)]

    codes = [r.status_code for r in answers]
    assert codes == [200, 200, 200, 429, 429, 429]
    assert {r.headers["Retry-After"] for r in answers[3:]} == {"20"}
    assert all(r.status_code < 500 for r in answers)
    with egress_ctx.session() as session:
        recorded = sorted(session.scalars(select(ExportEvent.status)).all())
    assert recorded == [200, 200, 200, 429, 429, 429]


def test_redis_limit_is_shared_by_two_workers(egress_ctx, pack_id):
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        peer_missing(f"Redis not reachable on 127.0.0.1:6379: {exc}")
    prefix = f"qd-test-{uuid.uuid4().hex}:"
    clock = lambda: 2_000_000.0  # noqa: E731
    path, _ = service.signed_download_url(egress_ctx, pack_id, user="bo")
    try:
        with (
            download_server(
                egress_ctx, RedisLimiter(client, limit=4, window_s=60, prefix=prefix, clock=clock)
            ) as one,
            download_server(
                egress_ctx, RedisLimiter(client, limit=4, window_s=60, prefix=prefix, clock=clock)
            ) as two,
        ):
            codes = [requests.get(base + path, timeout=60).status_code for base in [one, two] * 3]
    finally:
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
    assert codes == [200, 200, 200, 200, 429, 429]


def test_link_endpoint_issues_a_signed_url_for_the_signed_in_auditor(
    egress_ctx, console_url, pack_id
):
    from console.auth.users import add_user

    with egress_ctx.session() as session:
        add_user(session, "mia", "mia-auditor-password", ["auditor"])
    same_origin = {"Origin": console_url}
    anonymous = requests.post(
        f"{console_url}/api/evidence/packs/{pack_id}/link", headers=same_origin, timeout=10
    )
    browser = requests.Session()
    signed_in = browser.post(
        f"{console_url}/sign-in",
        data={"username": "mia", "password": "mia-auditor-password", "next": "/"},
        headers=same_origin,
        allow_redirects=False,
        timeout=30,
    )
    response = browser.post(
        f"{console_url}/api/evidence/packs/{pack_id}/link", headers=same_origin, timeout=10
    )
    missing = browser.post(
        f"{console_url}/api/evidence/packs/ev-nope/link", headers=same_origin, timeout=10
    )

    assert anonymous.status_code == 401  # nobody mints a download link signed out
    assert signed_in.status_code in (302, 303)
    assert response.status_code == 200
    assert response.json()["url"].startswith(f"/evidence/packs/{pack_id}/download?token=")
    assert missing.status_code == 404
    download = requests.get(console_url + response.json()["url"], timeout=60)
    assert download.status_code == 200
    assert download.headers["X-Export-User"] == "mia"


def test_incident_receiver_refuses_a_bad_batch_whole_and_retries_add_nothing(egress_ctx, tmp_path):
    from store.models import Incident

    ctx = AppContext.from_settings(
        make_settings(tmp_path / "inc", exports={"incidents_token": "inc-token"})
    )
    upgrade(ctx.engine)
    good = {
        "key": "inc-7",
        "title": "Web 5xx",
        "severity": "sev2",
        "service": "web",
        "started_at": "2025-11-21T10:00:00Z",
    }
    headers = {"Authorization": "Bearer inc-token"}
    with serve(create_app(ctx).server) as url:
        bad = requests.post(
            f"{url}/ingest/incidents",
            json=[good, {**good, "key": "INC-8", "severity": "p1"}],
            headers=headers,
            timeout=10,
        )
        first = requests.post(f"{url}/ingest/incidents", json=good, headers=headers, timeout=10)
        retry = requests.post(
            f"{url}/ingest/incidents",
            json={**good, "resolved_at": "2025-11-21T10:40:00Z"},
            headers=headers,
            timeout=10,
        )
        unauthorised = requests.post(f"{url}/ingest/incidents", json=good, timeout=10)

    assert bad.status_code == 400
    assert bad.json()["problems"] == [
        "item 2: severity: 'p1' is not one of ['sev1', 'sev2', 'sev3', 'sev4']"
    ]
    assert (first.status_code, first.json()["stored"]) == (200, 1)
    assert (retry.status_code, retry.json()["stored"], retry.json()["duplicates"]) == (200, 0, 1)
    assert unauthorised.status_code == 401
    with ctx.session() as session:
        rows = session.scalars(select(Incident)).all()
    assert [(r.incident_key, r.resolved_at is not None) for r in rows] == [("INC-7", True)]
    ctx.engine.dispose()


def test_a_tenant_over_its_limit_gets_429_while_another_tenant_is_served(egress_ctx, pack_id):
    scope = service.DOWNLOAD_SCOPE + pack_id
    clock = lambda: 3_000_000.0  # noqa: E731
    users = MemoryLimiter(limit=100, window_s=60, clock=clock)
    tenants = MemoryLimiter(limit=2, window_s=60, clock=clock)

    def token(user: str, tenant: str) -> str:
        return issue_token(SECRET, sub=user, scope=scope, ttl_s=60, tenant=tenant)

    app = flask.Flask("egress-tenants")
    app.register_blueprint(make_blueprint(egress_ctx, limiter=users, tenant_limiter=tenants))
    with serve(app) as base:
        acme = [requests.get(_url(base, pack_id, token(u, "acme")), timeout=60) for u in "abc"]
        globex = requests.get(_url(base, pack_id, token("d", "globex")), timeout=60)
        summary = requests.get(f"{base}/api/egress/summary", timeout=30)

    assert [r.status_code for r in acme] == [200, 200, 429]
    assert acme[2].headers["Retry-After"] == "60"
    assert acme[2].json()["limit"] == "tenant"
    assert globex.status_code == 200
    body = summary.json()
    assert (body["requests"], body["served"], body["coverage"]) == (4, 3, 1.0)
    assert body["refused"] == {"rate_limited_tenant": 1}
    per_tenant = {t["tenant"]: t for t in body["tenants"]}
    assert (per_tenant["acme"]["served"], per_tenant["acme"]["rate_limited_tenant"]) == (2, 1)
    assert per_tenant["globex"]["served"] == 1
    # No proxy log imported: the limiter's side is unknown, said so.
    assert body["proxy_log"] == {"events": 0, "application_only": 4, "in": False}


def test_summary_refuses_a_bad_window(console_url):
    bad = requests.get(f"{console_url}/api/egress/summary", params={"from": "soon"}, timeout=10)
    backwards = requests.get(
        f"{console_url}/api/egress/summary",
        params={"from": "2025-11-12T00:00:00Z", "to": "2025-11-11T00:00:00Z"},
        timeout=10,
    )
    assert (bad.status_code, backwards.status_code) == (400, 400)
