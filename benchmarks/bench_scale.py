"""Scale-out benchmark (issue 16): real processes on loopback, ratios from one run.

Starts, on a fresh PostgreSQL schema (127.0.0.1:5432, db `test`) seeded with the demo:
console workers under gunicorn (`console.wsgi:server`) and the receivers in their own process
(`quarterdeck ingest`, bounded). Then prints

* ingest p99 with 20 clients loading the goal board ÷ ingest p99 alone (goal ≤ 2),
* goal-board (`/api/goals`, what the Overview evaluates) p95 with 20 concurrent clients,
* goal-board throughput of 2 workers ÷ 1 worker.

Honest baseline: "alone" and "loaded" send the same byte-exact OPA capture (gzip, 2 events)
to the same receivers process, same parser, same indexes, one transaction per request, with
the same number of ingest clients; only the page load differs. Every phase runs 8 s; at most
20 page clients + 4 ingest clients (the machine has 2 cores). Run: `.venv/bin/python
benchmarks/bench_scale.py`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import requests
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PG = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CAPTURE = ROOT / "captures/opa-wire/decision-logs/event-buffer-queries.json.gz"
TOKEN = "bench-token"
PHASE_S = 8.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str) -> None:
    end = time.monotonic() + 90
    while time.monotonic() < end:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} never came up")


def hammer(fn, clients: int, seconds: float) -> list[float]:  # type: ignore[no-untyped-def]
    stop = time.monotonic() + seconds
    out: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        with requests.Session() as s:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                fn(s)
                with lock:
                    out.append(time.perf_counter() - t0)

    with ThreadPoolExecutor(max_workers=clients) as pool:
        for _ in range(clients):
            pool.submit(worker)
    return out


def main() -> None:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    env = dict(os.environ)
    env.update(
        QUARTERDECK_DATABASE_URL=f"{PG}?options={quote(f'-csearch_path={schema}')}",
        QUARTERDECK_SECRET_KEY="bench-secret-key-0123456789abcdef",
        QUARTERDECK_OPA__LOGS_TOKEN=TOKEN,
        QUARTERDECK_AUTH__ALLOW_ANONYMOUS_READ="true",
        QUARTERDECK_LOG_LEVEL="WARNING",
    )
    procs: list[subprocess.Popen[bytes]] = []

    def start(args: list[str]) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        procs.append(p)
        return p

    try:
        for cmd in (["db", "upgrade"], ["demo", "seed"]):
            subprocess.run(
                [str(BIN / "quarterdeck"), *cmd],
                cwd=ROOT,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        body = CAPTURE.read_bytes()
        ingest_port = free_port()
        start([str(BIN / "quarterdeck"), "ingest", "--port", str(ingest_port), "--limit", "8"])
        ports = {}
        for workers in (1, 2):
            ports[workers] = free_port()
            start(
                [
                    str(BIN / "gunicorn"),
                    "-w",
                    str(workers),
                    "-b",
                    f"127.0.0.1:{ports[workers]}",
                    "console.wsgi:server",
                ]
            )
        for port in (ingest_port, *ports.values()):
            wait_up(f"http://127.0.0.1:{port}/healthz")
        headers = {
            "Authorization": f"Bearer {TOKEN}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        ingest_url = f"http://127.0.0.1:{ingest_port}/ingest/opa/logs"
        codes: list[int] = []

        def ingest(s: requests.Session) -> None:
            codes.append(s.post(ingest_url, data=body, headers=headers, timeout=60).status_code)

        def goals(port: int):  # type: ignore[no-untyped-def]
            return lambda s: s.get(f"http://127.0.0.1:{port}/api/goals", timeout=120)

        goals(ports[2])(requests)  # warm both workers' caches a little
        alone = hammer(ingest, 4, PHASE_S)
        loaded_box: list[list[float]] = []
        pages_box: list[list[float]] = []
        t = threading.Thread(target=lambda: pages_box.append(hammer(goals(ports[2]), 20, PHASE_S)))
        t.start()
        loaded_box.append(hammer(ingest, 4, PHASE_S))
        t.join()
        loaded, pages = loaded_box[0], pages_box[0]
        one = hammer(goals(ports[1]), 4, PHASE_S)
        two = hammer(goals(ports[2]), 4, PHASE_S)
        print(
            f"ingest alone:  n={len(alone)} p50 {statistics.median(alone) * 1000:.0f} ms "
            f"p99 {pct(alone, 0.99) * 1000:.0f} ms"
        )
        print(
            f"ingest loaded: n={len(loaded)} p50 {statistics.median(loaded) * 1000:.0f} ms "
            f"p99 {pct(loaded, 0.99) * 1000:.0f} ms  (20 clients on /api/goals)"
        )
        print(
            f"ratio ingest p99 loaded/alone: {pct(loaded, 0.99) / pct(alone, 0.99):.2f} (goal <= 2)"
        )
        print(f"ingest answers: {sorted(set(codes))} ({codes.count(503)} x 503 + Retry-After)")
        print(
            f"goal board p95 with 20 clients: {pct(pages, 0.95) * 1000:.0f} ms "
            f"(p50 {statistics.median(pages) * 1000:.0f} ms, n={len(pages)}; goal <= 500 ms)"
        )
        print(
            f"goal board throughput 2 workers / 1 worker: {len(two) / max(1, len(one)):.2f} "
            f"({len(two) / PHASE_S:.1f} vs {len(one) / PHASE_S:.1f} req/s, 4 clients)"
        )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=20)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
