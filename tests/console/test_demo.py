"""The demo sprint: realistic mix of statuses, idempotent, all-or-nothing."""

from collections import Counter

import pytest
from sqlalchemy import func, inspect, select, text

from console.context import AppContext
from demo.seed import seed_demo
from store.goals import evaluate_goals
from store.migrate import upgrade
from store.models import Base, CiRun, OpaDecision, PullRequest, SyncRun
from tests.conftest import make_settings


def _row_counts(ctx: AppContext) -> dict[str, int]:
    with ctx.session() as session:
        return {
            name: session.scalar(select(func.count()).select_from(table))
            for name, table in Base.metadata.tables.items()
        }


def test_demo_gives_every_goal_a_value_and_a_mix_of_statuses(demo_ctx):
    with demo_ctx.session() as session:
        results = evaluate_goals(session, demo_ctx.sprint(), with_trend=False)
    statuses = Counter(r.status for r in results)
    assert len(results) == 11
    assert statuses["no_data"] == 0
    assert statuses["met"] >= 1 and statuses["missed"] >= 1
    assert all(r.samples > 0 for r in results)


def test_demo_rerun_adds_no_rows(demo_ctx):
    before = _row_counts(demo_ctx)
    report = seed_demo(demo_ctx.engine, force=True)
    assert report.stored == 0
    assert _row_counts(demo_ctx) == before


def test_demo_is_skipped_when_already_seeded(demo_ctx):
    assert seed_demo(demo_ctx.engine).sources == {}


def test_failed_seed_leaves_the_store_as_it_was(tmp_path):
    ctx = AppContext.from_settings(make_settings(tmp_path))
    upgrade(ctx.engine)
    # A store that breaks partway: GitHub and CI payloads are stored first, then the OPA status
    # reports fail (failing there, before the bulk traffic, keeps the test quick).
    with ctx.engine.begin() as conn:
        conn.execute(text("DROP TABLE opa_status_reports"))
    with pytest.raises(Exception, match="opa_status_reports"):
        seed_demo(ctx.engine)
    with ctx.session() as session:
        assert session.scalar(select(func.count()).select_from(PullRequest)) == 0
        assert session.scalar(select(func.count()).select_from(CiRun)) == 0
        assert session.scalar(select(func.count()).select_from(OpaDecision)) == 0
        assert session.scalar(select(func.count()).select_from(SyncRun)) == 0
    assert "traffic_samples" in inspect(ctx.engine).get_table_names()
    ctx.engine.dispose()


def test_demo_records_its_collector_runs_and_rejects_for_ingest_health(demo_ctx):
    from store.queries.ops import last_runs_frame, reject_counts_frame

    with demo_ctx.session() as session:
        runs = last_runs_frame(session)
        rejects = reject_counts_frame(session)
    assert {"github", "opa.logs", "prometheus.traffic", "route53", "exports"} <= set(runs["source"])
    assert set(rejects["source"]) == {"ci", "opa.logs", "exports"}


@pytest.mark.postgres
def test_demo_on_postgresql_evaluates_exactly_like_sqlite(pg_demo_ctx, demo_ctx):
    with pg_demo_ctx.session() as pg, demo_ctx.session() as lite:
        on_pg = evaluate_goals(pg, pg_demo_ctx.sprint(), with_trend=True)
        on_sqlite = evaluate_goals(lite, demo_ctx.sprint(), with_trend=True)
    assert [(r.id, r.status, r.samples) for r in on_pg] == [
        (r.id, r.status, r.samples) for r in on_sqlite
    ]
    for a, b in zip(on_pg, on_sqlite, strict=True):
        assert a.value == pytest.approx(b.value)
        assert [p.value for p in a.trend] == pytest.approx([p.value for p in b.trend], nan_ok=True)
