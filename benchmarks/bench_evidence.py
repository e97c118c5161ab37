"""Benchmark evidence packs on SQLite (run with `make bench`).

Seeds the demo sprint once, then times building the sprint-27 pack (collect from the store,
render every section, sign) three times and prints the seconds of each build and the median
(goal: < 10 s on this machine), plus one personalised download render, the pack size and
`evidence verify` on it. Bounded: one demo seed, three builds.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from console import evidence_service as service
from console.context import AppContext
from console.settings import Settings
from demo.seed import seed_demo
from evidence.pack import verify_pack
from store.ingest import utcnow
from store.migrate import upgrade

GOAL_S = 10.0
BUILDS = 3


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database_url=f"sqlite:///{tmp}/bench.db", var_dir=Path(tmp), demo_mode=True
        )
        ctx = AppContext.from_settings(settings)
        upgrade(ctx.engine)
        started = time.perf_counter()
        seed_demo(ctx.engine)
        print(f"demo seed: {time.perf_counter() - started:.1f} s")

        seconds = []
        for _ in range(BUILDS):
            started = time.perf_counter()
            pack = service.build_pack(ctx, "sprint-27", user="bench")
            seconds.append(time.perf_counter() - started)
            print(f"build sprint-27 pack: {seconds[-1]:.2f} s ({len(pack.data) / 1e6:.1f} MB)")
        median = statistics.median(seconds)
        verdict_text = "OK" if median < GOAL_S else "SLOW"
        print(f"median build: {median:.2f} s (goal < {GOAL_S:.0f} s): {verdict_text}")

        with ctx.session() as session:
            stored = service.get_pack(session, pack.pack_id)
        assert stored is not None
        started = time.perf_counter()
        data = service.render_download(
            ctx, stored, export_id=f"{pack.pack_id}.bench", user="bench-dl", at=utcnow()
        )
        print(f"render one download: {time.perf_counter() - started:.2f} s")
        started = time.perf_counter()
        verdict = verify_pack(data)
        elapsed = time.perf_counter() - started
        print(f"verify: {elapsed:.2f} s, intact={verdict.ok}, files={verdict.files}")
        ctx.engine.dispose()


if __name__ == "__main__":
    main()
