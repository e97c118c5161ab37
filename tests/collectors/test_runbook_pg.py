"""The shipped stage runbook in recovery mode against a real PostgreSQL primary + streaming
replica (started by tests/peers_traffic.py) and moto's Route 53: the replica is promoted by
`pg_promote()`, the probe write lands on it, the failover timeline gets each phase, RTO and RPO
are recorded and the stage gate reads them; a lagging replica blocks the promote step.

These runs use the system clock: PostgreSQL stamps `now()` and the write with its own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import select

from actions.base import ActionPolicy, Actor
from actions.dns_weights import FlipDnsWeights
from actions.promote import LAG_RULE, PostgresDatabase, PromoteDatabase
from actions.registry import ActionService
from actions.runbooks import RunbookRunner, RunRunbook, load_runbooks
from console.jobs.runbooks import FailoverTimeline
from providers.route53 import Route53
from store.audit import verify_chain
from store.goals import evaluate_gates
from store.measures import Window
from store.models import ActionAudit, TrafficSample
from store.queries.failover import get_run
from tests.collectors.test_failover_pg import wait_for_replay
from tests.peers_actions import create_weighted_record, read_weights
from tests.peers_traffic import PgPair, wait_until

RUNBOOKS = Path(__file__).resolve().parents[2] / "data" / "runbooks"
SRE = Actor("sam", frozenset({"sre"}))
CAPTAIN = Actor("cara", frozenset({"captain"}))
MAX_TICKS = 40


def connector(dsn: str) -> Callable[[], Any]:
    return lambda: psycopg.connect(dsn, connect_timeout=3)


def runner(route53: Any, pair: PgPair, *, rpo_s: float | None = None) -> RunbookRunner:
    books = load_runbooks(RUNBOOKS)[0]
    if rpo_s is not None:
        books = {k: v.__class__(**{**v.__dict__, "rpo_target_s": rpo_s}) for k, v in books.items()}
    db = PostgresDatabase(
        connector(pair.standby_dsn), connector(pair.primary_dsn), replica_name=pair.standby_name
    )
    service = ActionService(
        [
            FlipDnsWeights(lambda: Route53(route53, poll_s=0.01)),
            PromoteDatabase({"stage-db": lambda: db}),
            RunRunbook(lambda: books),
        ],
        ActionPolicy(live_environments=frozenset({"stage"})),
    )
    return RunbookRunner(service, FailoverTimeline())


def observe(session: Any, shares: dict[str, float]) -> None:
    now = datetime.now(UTC)
    for region, rps in shares.items():
        session.add(
            TrafficSample(
                ts=now - timedelta(seconds=1),
                region=region,
                ingress="gateway",
                requests_per_s=rps,
                rate_5xx_per_s=0.0,
            )
        )
    session.flush()


def in_recovery(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    return bool(row and row[0])


def test_recovery_run_promotes_the_replica_writes_on_it_and_the_stage_gate_reads_rto_rpo(
    pg_pair: PgPair, route53: Any, ctx
) -> None:
    zone, _ = create_weighted_record(route53)
    with psycopg.connect(pg_pair.primary_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, note text)")
        conn.execute("INSERT INTO orders (note) SELECT 'o' || g FROM generate_series(1, 50) g")
    wait_for_replay(pg_pair)  # otherwise the standby's lag may still be unknown: the gate blocks
    engine = runner(route53, pg_pair)
    with ctx.session() as session:
        observe(session, {"us-east": 100.0, "us-west": 100.0})
        started = engine.start(session, SRE, "stage-db-failover", "recovery", reason="stage drill")
        assert started.ok and started.run is not None, started.message
        run_id = started.run.run_id
        engine.tick(session)
        assert engine.approve(session, CAPTAIN, run_id).ok
    for _ in range(MAX_TICKS):  # promote + first write (bounded)
        with ctx.session() as session:
            engine.tick(session)
            run = engine.get(session, run_id)
            assert run is not None and run.status == "running", run.message if run else None
            if run.steps[run.current_step]["id"] == "converged":
                observe(session, {"us-west": 5000.0})
                break
    with ctx.session() as session:
        engine.tick(session)
        run = engine.get(session, run_id)
        assert run is not None and run.status == "completed", run.message
        rto, rpo, key = run.rto_s, run.rpo_s, run.failover_run_key

    assert not in_recovery(pg_pair.standby_dsn)
    with psycopg.connect(pg_pair.standby_dsn) as conn:
        (probes,) = conn.execute("SELECT count(*) FROM quarterdeck_failover_probe").fetchone()
        (orders,) = conn.execute("SELECT count(*) FROM orders").fetchone()
        conn.execute("INSERT INTO orders (note) VALUES ('after failover')")
    assert probes == 1 and orders == 50
    assert read_weights(route53, zone) == {"us-east": 0, "us-west": 100}
    assert rto is not None and 0 <= rto < 600 and rpo is not None and 0 <= rpo < 300
    now = datetime.now(UTC)
    with ctx.session() as session:
        detail = get_run(session, key or "", now=now)
        assert detail is not None and detail.environment == "stage" and not detail.in_progress
        assert {"started", "promoted", "writable", "traffic_shifted", "complete"} <= set(
            detail.phases
        )
        assert detail.rto_s == rto and detail.rpo_s == rpo
        sprint = ctx.sprint("sprint-27")
        gates = evaluate_gates(
            session, sprint, window=Window(now - timedelta(hours=1), now + timedelta(minutes=1)),
            now=now,
        )  # fmt: skip
        stage = next(g for g in gates if g.stage == "stage")
        checks = {c.id: c for c in stage.verification}
        assert (
            checks["stage-rto"].value == pytest.approx(rto / 60)
            and checks["stage-rto"].status == "met"
        )
        assert (
            checks["stage-rpo"].value == pytest.approx(rpo / 60)
            and checks["stage-rpo"].status == "met"
        )
        steps = {
            d["step"]
            for d in session.scalars(
                select(ActionAudit.detail).where(ActionAudit.action == "runbook.step")
            )
        }
        assert steps >= {"replica-lag", "go", "drain", "promote", "first-write", "converged"}
        assert verify_chain(session).ok


def test_a_replica_lagging_past_the_rpo_target_blocks_the_promote_step(
    pg_pair: PgPair, route53: Any, ctx
) -> None:
    create_weighted_record(route53)
    engine = runner(route53, pg_pair, rpo_s=0.5)
    db = engine._promoter().provider("stage-db")
    with ctx.session() as session:
        observe(session, {"us-east": 100.0, "us-west": 100.0})
        run = engine.start(session, SRE, "stage-db-failover", "recovery", reason="r").run
        assert run is not None
        engine.tick(session)  # the checks pass (caught up); the run waits at the approval
        assert run.status == "awaiting-approval", run.message
        run_id = run.run_id
    with psycopg.connect(pg_pair.primary_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, note text)")
    wait_for_replay(pg_pair)  # one replayed commit: pg_last_xact_replay_timestamp() is set
    with psycopg.connect(pg_pair.standby_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    with psycopg.connect(pg_pair.primary_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO orders (note) VALUES ('not replayed')")

    def lagging() -> bool:  # the standby holds WAL it has not replayed, for more than 0.5 s
        lag = db.lag().lag_s
        return lag is not None and lag > 0.5

    wait_until(lagging, "replay lag above 0.5 s")
    with ctx.session() as session:
        assert engine.approve(session, CAPTAIN, run_id).ok
        engine.tick(session)
        run = engine.get(session, run_id)
        assert run is not None and run.status == "blocked", run.message
        assert run.steps[run.current_step]["id"] == "promote"
        assert LAG_RULE in run.message and run.steps[run.current_step]["blocked_by"] == [LAG_RULE]
    assert in_recovery(pg_pair.standby_dsn)  # nothing promoted
