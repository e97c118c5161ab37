"""Benchmark the write path and the goals board on SQLite (run with `make bench`).

Prints rows/s for a fresh batch and for a replay of the same batch (what a retrying sender
costs), their ratio, and how long evaluating the sprint-27 board over the demo takes relative
to seeding it. Bounded: 50,000 rows, one demo seed, loopback-free.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from console.context import AppContext
from console.settings import Settings
from demo.seed import seed_demo
from store.db import make_engine
from store.goals import evaluate_goals
from store.ingest import upsert
from store.migrate import upgrade
from store.models import TrafficSample

ROWS = 50_000


def rows() -> list[dict[str, object]]:
    t0 = datetime(2025, 11, 10, tzinfo=UTC)
    return [
        {
            "ts": t0 + timedelta(seconds=15 * i),
            "region": "us-east",
            "ingress": "gw",
            "requests_per_s": 1.0,
            "rate_429_per_s": 0.0,
            "rate_5xx_per_s": 0.0,
            "rate_503_per_s": 0.0,
            "cache_hit_ratio": None,
        }
        for i in range(ROWS)
    ]


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        upgrade(engine)
        batch = rows()

        def load() -> None:
            with Session(engine) as session, session.begin():
                upsert(session, TrafficSample, batch, conflict=("ts", "region", "ingress"))

        fresh = timed(load)
        replay = timed(load)
        print(f"upsert fresh : {ROWS / fresh:>10,.0f} rows/s")
        print(f"upsert replay: {ROWS / replay:>10,.0f} rows/s")
        print(f"replay/fresh time ratio: {replay / fresh:.2f}")

        ctx = AppContext.from_settings(
            Settings(database_url=f"sqlite:///{Path(tmp) / 'demo.db'}", demo_mode=True)
        )
        upgrade(ctx.engine)
        seed = timed(lambda: seed_demo(ctx.engine))
        with ctx.session() as session:
            sprint = ctx.sprint("sprint-27")
            board = timed(lambda: evaluate_goals(session, sprint, with_trend=True))
        print(f"demo seed: {seed:.1f} s; goals board with trends: {board:.2f} s")
        print(f"board/seed time ratio: {board / seed:.3f}")


if __name__ == "__main__":
    main()
