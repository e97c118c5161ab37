"""The scale-out topology as real processes on loopback (issue 16, docs/scale-out.md).

PostgreSQL (a throwaway schema, reached by the child processes through libpq's
`options=-csearch_path=…`) and Redis at 127.0.0.1:6379; gunicorn workers for the console,
`quarterdeck ingest` for the receivers, two `quarterdeck collect prometheus --loop` replicas
against a local stub that counts what it is asked. Assertions are about behaviour (who polled,
what was stored, which answers came back), never about how fast this machine is; the deadlines
below only bound how long a broken build can hang the run.
"""

from __future__ import annotations

import gzip
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from sqlalchemy import Engine, func, select, text

from store.models import OpaDecision
from store.models.scale import Lease
from tests.conftest import CAPTURES, PgTemplate, _pg_schema_engine, free_port, peer_missing

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
DECISION_LOGS = CAPTURES / "opa-wire" / "decision-logs"
REDIS_URL = "redis://127.0.0.1:6379/15"
TOKEN = "scale-out-test-token"  # a test bearer token, not a secret of any deployment
SECRET = "scale-out-test-secret-key-0123456789"
PASSWORD = "correct horse battery staple"
# Prometheus answers an empty range query with exactly this body (no series matched).
EMPTY_MATRIX = b'{"status":"success","data":{"resultType":"matrix","result":[]}}'
DEADLINE_S = 60.0


@pytest.fixture
def pg_schema(pg_template: PgTemplate) -> Iterator[tuple[Engine, str]]:
    for eng in _pg_schema_engine(pg_template):
        with eng.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        yield eng, str(schema)


@pytest.fixture
def redis_db() -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1.0)
    try:
        client.ping()
    except Exception as exc:
        peer_missing(f"Redis not reachable at {REDIS_URL}: {type(exc).__name__}")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


def _env(schema: str, **extra: str) -> dict[str, str]:
    from tests.conftest import PG_ADMIN_URL

    options = quote(f"-csearch_path={schema}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARTERDECK_")}
    env.update(
        {
            "QUARTERDECK_DATABASE_URL": f"{PG_ADMIN_URL}?options={options}",
            "QUARTERDECK_SECRET_KEY": SECRET,
            "QUARTERDECK_OPA__LOGS_TOKEN": TOKEN,
            "QUARTERDECK_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


class Procs:
    """Child processes started by one test; all stopped (by pid) at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.started.append((proc, log))
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        log = next(path for p, path in self.started if p is proc)
        return log.read_text(errors="replace")

    def stop_all(self) -> None:
        for proc, _ in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.started:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    running = Procs(tmp_path)
    yield running
    running.stop_all()


def _until(check: Any, what: str, deadline_s: float = DEADLINE_S) -> Any:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.RequestException:
        return False


class StubPrometheus:
    """A local source that counts every `query_range` it is asked."""

    def __init__(self) -> None:
        self.requests = 0
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                if self.path.startswith("/api/v1/query_range"):
                    stub.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(EMPTY_MATRIX)))
                self.end_headers()
                self.wfile.write(EMPTY_MATRIX)

            do_GET = _answer

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _passes(text_out: str) -> int:
    return len(re.findall(r"^prometheus: (?!failed)", text_out, flags=re.M))


def test_two_collector_replicas_poll_once_and_hand_over_when_the_leader_dies(
    pg_schema: tuple[Engine, str], procs: Procs
) -> None:
    engine, schema = pg_schema
    stub = StubPrometheus()
    try:
        env = _env(schema, QUARTERDECK_PROMETHEUS__URL=stub.url)
        args = [str(VENV_BIN / "quarterdeck"), "collect", "prometheus", "--loop"]
        args += ["--interval", "1", "--lease-ttl", "3"]
        first = procs.start("collector-a", args, env)
        second = procs.start("collector-b", args, env)
        both = [first, second]

        def _leader_passes() -> int:
            return sum(_passes(procs.output(p)) for p in both) >= 3

        _until(_leader_passes, "three passes by the replicas")
        outs = {p.pid: procs.output(p) for p in both}
        counts = {pid: _passes(out) for pid, out in outs.items()}
        # Exactly one replica polls; the other follows and never asks the source.
        assert sorted(counts.values())[0] == 0, counts
        leader = next(p for p in both if counts[p.pid] > 0)
        follower = next(p for p in both if p is not leader)
        assert "follows" in outs[follower.pid]
        with engine.connect() as conn:
            before = conn.execute(select(Lease).where(Lease.name == "collect:prometheus")).one()
        assert before.holder.split(":")[1] == str(leader.pid)
        # The source was asked only by the leader's passes (one still running may be in flight).
        assert stub.requests >= counts[leader.pid]

        leader.kill()  # a crash: no release, the lease must expire
        leader.wait()
        passes_before = _passes(procs.output(follower))
        _until(lambda: _passes(procs.output(follower)) > passes_before, "the follower's first pass")
        with engine.connect() as conn:
            after = conn.execute(select(Lease).where(Lease.name == "collect:prometheus")).one()
        assert after.holder.split(":")[1] == str(follower.pid)
        assert after.token == before.token + 1  # the lease changed hands once
        # Never overlapping: taken only after the dead leader's lease ran out, and within a TTL.
        assert after.acquired_at >= before.expires_at
        assert (after.acquired_at - before.expires_at).total_seconds() <= 3
        assert "leads" in procs.output(follower)
    finally:
        stub.close()


def _decisions_body() -> tuple[bytes, int]:
    raw = (DECISION_LOGS / "event-buffer-queries.json.gz").read_bytes()
    events = json.loads(gzip.decompress(raw))
    return raw, len({e["decision_id"] for e in events})


def test_receivers_answer_while_pages_load_and_sessions_and_limits_span_workers(
    pg_schema: tuple[Engine, str], procs: Procs, redis_db: str
) -> None:
    engine, schema = pg_schema
    env = _env(
        schema,
        QUARTERDECK_REDIS_URL=redis_db,
        QUARTERDECK_AUTH__ALLOW_ANONYMOUS_READ="false",
        QUARTERDECK_PASSWORD=PASSWORD,
    )
    added = subprocess.run(
        [str(VENV_BIN / "quarterdeck"), "users", "add", "sre-one", "--role", "sre"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    console_a, console_b, ingest_port = free_port(), free_port(), free_port()
    gunicorn = str(VENV_BIN / "gunicorn")
    procs.start(
        "console-a",
        [gunicorn, "-w", "2", "-b", f"127.0.0.1:{console_a}", "console.wsgi:server"],
        env,
    )
    procs.start(
        "console-b",
        [gunicorn, "-w", "1", "-b", f"127.0.0.1:{console_b}", "console.wsgi:server"],
        env,
    )
    procs.start(
        "receivers",
        [str(VENV_BIN / "quarterdeck"), "ingest", "--port", str(ingest_port), "--limit", "4"],
        env,
    )
    for port in (console_a, console_b, ingest_port):
        _until(lambda port=port: _up(f"http://127.0.0.1:{port}/healthz"), f"port {port}")

    # A session made on one console process is valid on the other (signed, shared secret).
    origin_a = {"Origin": f"http://127.0.0.1:{console_a}"}
    with requests.Session() as s:
        signed = s.post(
            f"http://127.0.0.1:{console_a}/sign-in",
            data={"username": "sre-one", "password": PASSWORD, "next": "/"},
            headers=origin_a,
            allow_redirects=False,
            timeout=30,
        )
        assert signed.status_code == 302, signed.text[:300]
        cookies = s.cookies.get_dict()
    assert cookies
    goals_b = f"http://127.0.0.1:{console_b}/api/goals"
    assert requests.get(goals_b, cookies=cookies, timeout=60).status_code == 200
    assert requests.get(goals_b, timeout=60, allow_redirects=False).status_code != 200

    # Pages under load on the console while OPA batches arrive at the receivers.
    body, distinct = _decisions_body()
    stop = threading.Event()
    page_answers: list[int] = []

    def load_pages() -> None:
        with requests.Session() as s:
            s.cookies.update(cookies)
            while not stop.is_set():
                for path in ("/api/goals", "/"):
                    page_answers.append(
                        s.get(f"http://127.0.0.1:{console_a}{path}", timeout=60).status_code
                    )

    def send_batch(_: int) -> tuple[int, str | None]:
        headers = {
            "Authorization": f"Bearer {TOKEN}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        url = f"http://127.0.0.1:{ingest_port}/ingest/opa/logs"
        for _attempt in range(20):  # OPA retries a 503 after Retry-After; so do we
            answer = requests.post(url, data=body, headers=headers, timeout=60)
            if answer.status_code != 503:
                return answer.status_code, None
            retry = answer.headers.get("Retry-After")
            assert retry is not None and int(retry) >= 1
            time.sleep(0.2)
        return 503, "still saturated"

    loaders = [threading.Thread(target=load_pages, daemon=True) for _ in range(6)]
    for t in loaders:
        t.start()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(send_batch, range(40)))
    finally:
        stop.set()
        for t in loaders:
            t.join(timeout=60)
    assert all(code == 200 for code, _ in answers), answers
    assert page_answers and all(code == 200 for code in page_answers), set(page_answers)
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(OpaDecision)).scalar_one()
    assert stored == distinct  # 40 deliveries of one batch: every decision once
    # The receivers' process serves nothing else.
    assert requests.get(f"http://127.0.0.1:{ingest_port}/", timeout=10).status_code == 404

    # Sign-in throttle in Redis: failures on one process lock the account on the other.
    def fail_on(port: int) -> int:
        return requests.post(
            f"http://127.0.0.1:{port}/sign-in",
            data={"username": "sre-one", "password": "wrong", "next": "/"},
            headers={"Origin": f"http://127.0.0.1:{port}"},
            allow_redirects=False,
            timeout=30,
        ).status_code

    codes_a = [fail_on(console_a) for _ in range(5)]
    assert 429 not in codes_a
    assert fail_on(console_b) == 429


@pytest.mark.parametrize("days_old", [40])
def test_maintenance_rolls_decisions_up_then_retires_old_rows(
    engine: Engine, clock: Any, days_old: int
) -> None:
    """Not a process test: the retention pass on both dialects (batched delete, rollups kept)."""
    from datetime import timedelta

    from sqlalchemy.orm import Session

    from store.retention import RetentionPolicy, decision_daily, maintain

    now = clock()
    old, recent = now - timedelta(days=days_old), now - timedelta(days=1)
    rows = [
        {
            "decision_id": f"d-{i}",
            "timestamp": at,
            "received_at": at,
            "instance_id": "opa-1",
            "path": "deploy/allow",
            "allowed": i % 2 == 0,
            "dry_run": False,
            "bundles": {},
            "erased": [],
            "masked": [],
            "metrics": {},
        }
        for i, at in enumerate([old] * 3 + [recent] * 2)
    ]
    with Session(engine) as session, session.begin():
        session.execute(OpaDecision.__table__.insert(), rows)
    with Session(engine) as session:
        report = maintain(session, now=now, policy=RetentionPolicy(decisions_days=30, batch=2))
    assert report.rows_deleted["opa_decisions"] == 3  # two batches of at most 2
    with Session(engine) as session:
        left = session.execute(select(func.count()).select_from(OpaDecision)).scalar_one()
        daily = decision_daily(session, since=now - timedelta(days=90), until=now)
    assert left == 2
    # The old day survives in the rollups the long-window charts read.
    by_day = {d.day.date(): (d.decisions, d.allowed, d.denied) for d in daily}
    assert by_day[old.date()] == (3, 2, 1)
    assert by_day[recent.date()] == (2, 1, 1)
    with Session(engine) as session:  # a second pass changes nothing (idempotent)
        again = maintain(session, now=now, policy=RetentionPolicy(decisions_days=30))
    assert again.rows_deleted["opa_decisions"] == 0
