"""The failover probe on a real PostgreSQL primary and streaming replica: lag from
`pg_stat_replication`, promotion seen by `pg_is_in_recovery()`, the first write, and a node
going away mid-failover."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import select

from collectors import failover
from store.models import ReplicationLagSample, SyncRun
from store.queries.failover import get_run
from tests.peers_traffic import PgPair, wait_until

MAX_TICKS = 50  # bound on probe ticks while waiting for the promotion to be seen


def connector(dsn: str) -> Callable[[], Any]:
    return lambda: psycopg.connect(dsn, connect_timeout=3)


def write_on_primary(pair: PgPair, rows: int) -> None:
    with psycopg.connect(pair.primary_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, note text)")
        for i in range(rows):
            conn.execute("INSERT INTO orders (note) VALUES (%s)", (f"order {i}",))


def wait_for_replay(pair: PgPair) -> None:
    """Block until the standby has replayed everything the primary wrote (bounded)."""

    def caught_up() -> bool:
        with psycopg.connect(pair.primary_dsn) as conn:
            row = conn.execute(
                "SELECT bool_and(replay_lsn >= pg_current_wal_lsn()) FROM pg_stat_replication"
            ).fetchone()
        return bool(row and row[0])

    wait_until(caught_up, "standby replay")


def tick(ctx, pair: PgPair, **kw: Any) -> failover.ProbeReport:  # type: ignore[no-untyped-def]
    return failover.probe_tick(
        ctx.sessions,
        environment="stage",
        primary=connector(pair.primary_dsn),
        standby=connector(pair.standby_dsn),
        **kw,
    )


def test_probe_records_lag_from_the_primary_while_the_standby_replays(pg_pair: PgPair, ctx):
    write_on_primary(pg_pair, 20)

    report = tick(ctx, pg_pair)

    assert report.standby_role == "recovery" and report.errors == []
    assert report.marked == [] and report.run_key is None
    with ctx.sessions() as session:
        samples = session.scalars(select(ReplicationLagSample)).all()
    assert [s.replica for s in samples] == [pg_pair.standby_name]
    assert samples[0].lag_s >= 0


def test_promotion_during_probing_records_phases_inside_observed_bounds_and_rpo_from_lag(
    pg_pair: PgPair, ctx
):
    write_on_primary(pg_pair, 50)
    wait_for_replay(pg_pair)  # so the 50 orders are on the standby when it is promoted
    before = tick(ctx, pg_pair)
    assert before.standby_role == "recovery"
    with ctx.sessions() as session:
        measured = session.scalars(select(ReplicationLagSample)).one()
    promote_requested = datetime.now(UTC)

    pg_pair.promote()
    promote_returned = datetime.now(UTC)
    reports = []
    for _ in range(MAX_TICKS):
        reports.append(tick(ctx, pg_pair))
        if "writable" in reports[-1].marked:
            break
    seen = datetime.now(UTC)

    marked = [m for r in reports for m in r.marked]
    assert marked[:3] == ["started", "promoted", "writable"]
    with ctx.sessions() as session:
        detail = get_run(session, reports[-1].run_key or "", now=seen)
    assert detail is not None and detail.source == "probe"
    started, promoted, writable = (detail.phases[p] for p in ("started", "promoted", "writable"))
    # The run starts at the last tick that saw the standby in recovery (before the promotion).
    assert started == before.observed_at <= promote_requested
    assert promote_requested <= promoted <= seen
    assert promote_returned <= writable <= seen
    assert promoted <= writable
    assert detail.rto_s == (writable - started).total_seconds()
    assert detail.rpo_s == measured.lag_s
    with psycopg.connect(pg_pair.standby_dsn) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM quarterdeck_failover_probe").fetchone()
        (orders,) = conn.execute("SELECT count(*) FROM orders").fetchone()
    assert rows == 1 and orders == 50


def test_primary_unreachable_mid_failover_is_recorded_and_the_standby_still_observed(
    pg_pair: PgPair, ctx
):
    tick(ctx, pg_pair)
    pg_pair.stop("primary")

    report = tick(ctx, pg_pair)

    assert report.standby_role == "recovery"
    assert any(e.startswith("primary unreachable") for e in report.errors)
    with ctx.sessions() as session:
        runs = session.scalars(select(SyncRun).order_by(SyncRun.id)).all()
    assert [r.status for r in runs] == ["ok", "failed"]
    assert "primary unreachable" in (runs[-1].error or "")
    assert '"standby": "recovery"' in (runs[-1].cursor or "")

    pg_pair.promote()
    after = tick(ctx, pg_pair)

    assert after.marked[:3] == ["started", "promoted", "writable"]


def test_standby_unreachable_keeps_the_last_known_role_in_the_cursor(pg_pair: PgPair, ctx):
    tick(ctx, pg_pair)
    pg_pair.stop("standby")

    report = tick(ctx, pg_pair)

    assert report.standby_role is None
    assert any(e.startswith("standby unreachable") for e in report.errors)
    with ctx.sessions() as session:
        last = session.scalars(select(SyncRun).order_by(SyncRun.id.desc()).limit(1)).one()
    assert last.status == "failed" and '"standby": "recovery"' in (last.cursor or "")


def test_promotion_during_a_marked_drill_joins_the_drill_and_rto_counts_from_its_mark(
    pg_pair: PgPair, ctx
):
    tick(ctx, pg_pair)
    with ctx.session() as session:
        key = failover.start_run(
            session, environment="stage", at=datetime.now(UTC), kind="drill", source="manual"
        )
    pg_pair.promote()

    reports = [tick(ctx, pg_pair)]
    for _ in range(MAX_TICKS):
        if "writable" in reports[-1].marked:
            break
        reports.append(tick(ctx, pg_pair))

    assert {r.run_key for r in reports} == {key}
    with ctx.sessions() as session:
        detail = get_run(session, key, now=datetime.now(UTC))
    assert detail is not None and detail.kind == "drill"
    assert detail.rto_s == (detail.phases["writable"] - detail.phases["started"]).total_seconds()
