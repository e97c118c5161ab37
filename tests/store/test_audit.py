"""The audit hash chain on SQLite and PostgreSQL: appends link, tampering is named by row."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import DBAPIError

from store.audit import GENESIS_HASH, append_audit, verify_chain
from store.db import session_factory, session_scope
from store.metrics import Window
from store.models import ActionAudit
from store.queries.audit import _approvals
from tests.peers_actions import drop_audit_guard

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _seed(engine: Engine, n: int = 4) -> None:
    with session_scope(session_factory(engine)) as session:
        for i in range(n):
            append_audit(
                session,
                actor="ana" if i % 2 else "bo",
                action="route53.flip-weights",
                target="route53:Z1/api.example.com./A",
                environment="prod",
                outcome="approved" if i == 2 else "planned",
                detail={"plan_id": f"p{i}", "weights": {"us-east": i, "us-west": 100 - i}},
                at=T0 + timedelta(minutes=i),
            )


def test_appended_rows_link_to_their_predecessor_and_verify(engine: Engine) -> None:
    _seed(engine)

    with session_scope(session_factory(engine)) as session:
        rows = session.scalars(select(ActionAudit).order_by(ActionAudit.seq)).all()
        verdict = verify_chain(session)

    assert [r.seq for r in rows] == [1, 2, 3, 4]
    assert rows[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.row_hash for a, b in itertools.pairwise(rows))
    assert verdict.ok and verdict.rows == 4


def test_the_database_refuses_updates_and_deletes_of_audit_rows(engine: Engine) -> None:
    _seed(engine, 1)

    for statement in (
        update(ActionAudit).values(actor="mallory"),
        delete(ActionAudit),
    ):
        with (
            pytest.raises(DBAPIError, match="append-only"),
            session_scope(session_factory(engine)) as session,
        ):
            session.execute(statement)

    with session_scope(session_factory(engine)) as session:
        assert verify_chain(session).ok


def test_a_modified_row_is_named_by_verify(engine: Engine) -> None:
    _seed(engine)
    with session_scope(session_factory(engine)) as session:
        drop_audit_guard(session)
        session.execute(update(ActionAudit).where(ActionAudit.seq == 3).values(actor="mallory"))

    with session_scope(session_factory(engine)) as session:
        verdict = verify_chain(session)

    assert not verdict.ok
    assert verdict.first_bad_seq == 3
    assert "row 3 was modified" in verdict.problem


def test_a_deleted_row_and_a_relinked_row_are_detected(engine: Engine) -> None:
    _seed(engine)
    with session_scope(session_factory(engine)) as session:
        drop_audit_guard(session)
        session.execute(delete(ActionAudit).where(ActionAudit.seq == 2))
    with session_scope(session_factory(engine)) as session:
        assert verify_chain(session).first_bad_seq == 2

    with session_scope(session_factory(engine)) as session:
        row3 = session.scalar(select(ActionAudit).where(ActionAudit.seq == 3))
        assert row3 is not None
        session.execute(update(ActionAudit).where(ActionAudit.seq == 3).values(seq=2))
    with session_scope(session_factory(engine)) as session:
        verdict = verify_chain(session)
    assert not verdict.ok and verdict.first_bad_seq == 2


def test_approvals_metric_counts_approved_rows_for_the_environment(engine: Engine) -> None:
    _seed(engine)
    window = Window(T0 - timedelta(hours=1), T0 + timedelta(hours=1))

    with session_scope(session_factory(engine)) as session:
        value = _approvals(session, window, "count", {"environment": "prod"})
        other = _approvals(session, window, "count", {"environment": "stage"})

    assert value.value == 1.0 and value.samples == 4
    assert other.value is None
