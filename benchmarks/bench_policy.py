"""Benchmark the OPA decision-log path and decision search (run with `make bench`).

1. Ingest over loopback HTTP (werkzeug, threaded) with gzip batches of 500 events, into SQLite
   and into PostgreSQL when it is reachable; the raw pipeline — gzip + JSON parse and a plain
   `executemany` of the same rows into the same schema, no HTTP, no validation — in the same run,
   and the ratio. Goals: ≥ 10,000 events/s into SQLite; ratio ≥ 0.5.
2. p99 ingest→searchable latency under 5,000 events/s offered load: from sending a batch to
   `/api/decisions?decision_id=` returning its last event. Goal < 1 s.
3. Search over N stored decisions: p95 of the first page and of a full-text query. Goal < 300 ms
   on SQLite at 5,000,000; N defaults to 1,000,000 to keep the run within minutes and is
   printed (`--search-size 5000000` for the full size).

Bounded: a fixed number of batches and queries, loopback only.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import Engine, insert, text
from werkzeug.serving import make_server

from collectors.opa import DecisionOptions, transform_decision
from console.context import AppContext
from console.http.policy import make_blueprint
from console.settings import Settings
from store.db import make_engine, session_factory
from store.migrate import upgrade
from store.models import OpaDecision
from store.queries.policy import DecisionFilter, search_decisions

BATCH = 500
INGEST_BATCHES = 60  # 30,000 events per dialect
TOKEN = "bench-token"
PG_URL = os.environ.get(
    "QUARTERDECK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
T0 = datetime(2025, 11, 12, tzinfo=UTC)
USERS = [f"user{i}" for i in range(5000)]
SCHEMAS: dict[int, str] = {}


def events(n: int, seed: int) -> list[dict[str, Any]]:
    base = T0 + timedelta(seconds=seed)
    return [
        {
            "decision_id": str(uuid.uuid4()),
            "labels": {"id": f"opa-{i % 100}", "version": "1.4.2", "environment": "prod"},
            "bundles": {"authz": {"revision": "r42"}},
            "path": "acme/authz/allow",
            "input": {
                "user": {"name": USERS[(seed + i) % len(USERS)], "roles": ["viewer"]},
                "method": "GET",
                "resource": "exports",
            },
            "result": {"allow": i % 3 != 0},
            "requested_by": "10.0.0.1:5000",
            "metrics": {"timer_rego_query_eval_ns": 50000},
            "timestamp": (base + timedelta(milliseconds=i)).isoformat(),
        }
        for i in range(n)
    ]


def raw_row(e: dict[str, Any], received: datetime) -> dict[str, Any]:
    """Map an event to a row with no checks at all (the floor any receiver has to pay)."""
    labels = e["labels"]
    return {
        "decision_id": e["decision_id"],
        "timestamp": datetime.fromisoformat(e["timestamp"]),
        "received_at": received,
        "instance_id": labels["id"],
        "environment": labels.get("environment"),
        "opa_version": labels.get("version"),
        "path": e["path"],
        "allowed": e["result"].get("allow"),
        "dry_run": False,
        "bundles": {k: v["revision"] for k, v in e["bundles"].items()},
        "erased": [],
        "masked": [],
        "input": e["input"],
        "result": e["result"],
        "requested_by": e.get("requested_by"),
        "metrics": e.get("metrics", {}),
    }


class Server:
    def __init__(self, engine: Engine, tmp: Path) -> None:
        settings = Settings(
            database_url=str(engine.url), var_dir=tmp, demo_mode=True, opa={"logs_token": TOKEN}
        )
        ctx = AppContext(settings=settings, engine=engine, sessions=session_factory(engine))
        app = Flask("bench")
        app.register_blueprint(make_blueprint(ctx))
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def post(self, body: bytes) -> None:
        req = urllib.request.Request(
            self.url + "/ingest/opa/logs",
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "Authorization": f"Bearer {TOKEN}",
            },
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert resp.status == 200, resp.status

    def found(self, decision_id: str) -> bool:
        with urllib.request.urlopen(
            f"{self.url}/api/decisions?decision_id={decision_id}", timeout=60
        ) as resp:
            return bool(json.loads(resp.read())["decisions"])

    def close(self) -> None:
        self.server.shutdown()


def percentile(values: list[float], q: float) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, round(q / 100 * (len(data) - 1)))]


def fresh_engine(dialect: str, tmp: Path, name: str) -> Engine | None:
    if dialect == "sqlite":
        engine = make_engine(f"sqlite:///{tmp / f'{name}.db'}")
        upgrade(engine)
        return engine
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = make_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        admin.dispose()
    except Exception as exc:
        print(f"  PostgreSQL not reachable ({type(exc).__name__}): skipped")
        return None
    engine = make_engine(PG_URL)
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _path(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute(f'SET search_path TO "{schema}"')
        dbapi_conn.commit()

    upgrade(engine)
    SCHEMAS[id(engine)] = schema
    return engine


def drop(engine: Engine) -> None:
    schema = SCHEMAS.pop(id(engine), None)
    engine.dispose()
    if schema:
        admin = make_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def bench_ingest(dialect: str, tmp: Path) -> None:
    print(f"-- ingest into {dialect}: {INGEST_BATCHES} gzip batches of {BATCH} events")
    bodies = [
        gzip.compress(json.dumps(events(BATCH, i * BATCH)).encode()) for i in range(INGEST_BATCHES)
    ]

    engine = fresh_engine(dialect, tmp, "http")
    if engine is None:
        return
    server = Server(engine, tmp)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(server.post, bodies))
    http_s = time.perf_counter() - start
    server.close()
    drop(engine)

    raw_engine = fresh_engine(dialect, tmp, "raw")
    assert raw_engine is not None
    received = datetime.now(UTC)
    start = time.perf_counter()
    table = OpaDecision.__table__
    with raw_engine.begin() as conn:
        for body in bodies:
            parsed = json.loads(gzip.decompress(body))
            conn.execute(insert(table), [raw_row(e, received) for e in parsed])
    raw_s = time.perf_counter() - start
    drop(raw_engine)

    total = INGEST_BATCHES * BATCH
    http_rate, raw_rate = total / http_s, total / raw_s
    print(f"  HTTP receiver : {http_rate:10,.0f} events/s ({total:,} events in {http_s:.2f} s)")
    print(f"  raw pipeline  : {raw_rate:10,.0f} events/s (gzip+JSON+executemany, no HTTP)")
    print(f"  ratio         : {http_rate / raw_rate:.2f} (goal ≥ 0.5)")


def bench_latency(tmp: Path, *, offered: int = 5000, seconds: int = 6) -> None:
    print(f"-- ingest→searchable latency on SQLite at {offered:,} events/s offered, {seconds} s")
    engine = fresh_engine("sqlite", tmp, "latency")
    assert engine is not None
    server = Server(engine, tmp)
    interval = BATCH / offered
    latencies: list[float] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        batch = events(BATCH, i * BATCH)
        body = gzip.compress(json.dumps(batch).encode())
        sent = time.perf_counter()
        server.post(body)
        while not server.found(batch[-1]["decision_id"]):
            time.sleep(0.005)
        with lock:
            latencies.append(time.perf_counter() - sent)

    batches = int(seconds / interval)
    with ThreadPoolExecutor(max_workers=8) as pool:
        start = time.perf_counter()
        futures = []
        for i in range(batches):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(one, i))
        for f in futures:
            f.result()
    elapsed = time.perf_counter() - start
    server.close()
    engine.dispose()
    print(
        f"  {batches * BATCH:,} events in {elapsed:.2f} s ({batches * BATCH / elapsed:,.0f}/s "
        f"achieved); p50 {percentile(latencies, 50) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 99) * 1000:.0f} ms (goal < 1000 ms)"
    )


def bench_search(tmp: Path, size: int, repeats: int = 40) -> None:
    print(f"-- search over {size:,} stored decisions on SQLite (size used: {size:,})")
    engine = fresh_engine("sqlite", tmp, "search")
    assert engine is not None
    options = DecisionOptions()
    received = T0 + timedelta(days=30)
    table = OpaDecision.__table__
    start = time.perf_counter()
    chunk = 20_000
    with engine.begin() as conn:
        for offset in range(0, size, chunk):
            rows = [
                transform_decision(e, received_at=received, options=options)
                for e in events(min(chunk, size - offset), offset)
            ]
            conn.execute(insert(table), rows)
    print(f"  loaded in {time.perf_counter() - start:.0f} s (FTS kept by triggers)")
    sessions = session_factory(engine)

    def timed(query: Callable[[], Any]) -> list[float]:
        out = []
        for _ in range(repeats):
            t = time.perf_counter()
            query()
            out.append(time.perf_counter() - t)
        return out

    def page(filters: DecisionFilter) -> Callable[[], Any]:
        def run() -> Any:
            with sessions() as s:
                return search_decisions(s, filters=filters, limit=100)

        return run

    window = DecisionFilter(start=T0, end=T0 + timedelta(days=60))
    for label, flt in (
        ("first page (time range)", window),
        ("full text, rare word", DecisionFilter(text="user4321")),
        (
            "full text, common word, time range",
            DecisionFilter(text="viewer exports", start=T0, end=T0 + timedelta(days=60)),
        ),
    ):
        times = timed(page(flt))
        print(f"  {label:<38}: p95 {percentile(times, 95) * 1000:7.1f} ms (goal < 300 ms)")
    engine.dispose()


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--search-size", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        bench_ingest("sqlite", tmp)
        bench_ingest("postgresql", tmp)
        bench_latency(tmp)
        bench_search(tmp, args.search_size)


if __name__ == "__main__":
    main()
