"""Decision search (FTS5 on SQLite, full-text on PostgreSQL), drift, and the policy frames,
on both dialects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from collectors.opa import ingest_decisions, ingest_status
from store.metrics import Window
from store.models import BundlePin
from store.queries.policy import (
    DecisionFilter,
    SearchError,
    allow_deny_frame,
    decisions_block,
    drift_frame,
    get_decision,
    search_decisions,
    upload_cadence_frame,
)

T0 = datetime(2025, 11, 12, 10, tzinfo=UTC)
WINDOW = Window(T0 - timedelta(days=1), T0 + timedelta(days=2))


def event(n: int, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "decision_id": f"d-{n:03d}",
        "labels": {"id": f"opa-{n % 2}", "environment": "prod" if n % 2 else "stage"},
        "bundles": {"authz": {"revision": "r42" if n < 6 else "r43"}},
        "path": "acme/exports/allow" if n % 3 else "acme/deploy/allow",
        "input": {"user": {"name": f"user{n}"}, "resource": "exports", "note": "plain"},
        "result": {"allow": n % 2 == 0},
        "timestamp": (T0 + timedelta(minutes=n)).isoformat(),
    }
    body.update(over)
    return body


@pytest.fixture
def session(engine: Engine) -> Any:
    events = [event(n) for n in range(12)]
    events[4]["input"]["note"] = "Übergröße <script>alert('x')</script> 100% _weird_"
    events[7]["input"]["user"]["name"] = "alice.smith@example.com"
    with Session(engine, expire_on_commit=False) as s:
        with s.begin():
            for i in range(0, 12, 4):
                ingest_decisions(
                    s, events[i : i + 4], received_at=T0 + timedelta(minutes=12, seconds=30 * i)
                )
        yield s


def ids(page_rows: list[dict[str, Any]]) -> list[str]:
    return [r["decision_id"] for r in page_rows]


def search(session: Session, **kw: Any) -> list[str]:
    return ids(search_decisions(session, filters=DecisionFilter(**kw), limit=100).rows)


def test_full_text_matches_words_in_input_and_result(session: Session) -> None:
    assert search(session, text="user5") == ["d-005"]
    assert search(session, text="script alert") == ["d-004"]
    assert search(session, text="ALICE example") == ["d-007"]  # case-folded, split on punctuation
    assert search(session, text="user1*") == ["d-011", "d-010", "d-001"]
    assert search(session, text="alice nobody") == []
    assert search(session, text="Übergröße") == ["d-004"]


def test_text_that_looks_like_query_syntax_is_only_words(session: Session) -> None:
    assert search(session, text='" OR 1=1 -- NEAR(') == []
    assert search(session, text="100%") == ["d-004"]
    with pytest.raises(SearchError, match="no words"):
        search(session, text="%%% ***")


def test_filters_narrow_by_path_verdict_instance_revision_and_time(session: Session) -> None:
    assert search(session, path="/acme/deploy/allow") == ["d-009", "d-006", "d-003", "d-000"]
    assert search(session, path="acme/deploy*") == ["d-009", "d-006", "d-003", "d-000"]
    assert search(session, allowed=False, environment="prod", revision="r43") == [
        "d-011",
        "d-009",
        "d-007",
    ]
    assert search(session, instance_id="opa-0", start=T0 + timedelta(minutes=8)) == [
        "d-010",
        "d-008",
    ]
    assert search(session, decision_id="d-003") == ["d-003"]


def test_cursor_pages_cover_everything_once_newest_first(session: Session) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        page = search_decisions(session, filters=DecisionFilter(), limit=5, cursor=cursor)
        seen += ids(page.rows)
        cursor = page.next_cursor
        if cursor is None:
            break
    block, more = decisions_block(session, filters=DecisionFilter(), offset=10, limit=5)

    assert seen == [f"d-{n:03d}" for n in reversed(range(12))]
    assert ids(block) == ["d-001", "d-000"] and more is False


def test_detail_keeps_input_result_and_pointers(session: Session) -> None:
    decision = get_decision(session, "d-004")
    assert decision is not None
    assert decision["input"]["note"].startswith("Übergröße <script>")
    assert decision["allowed"] is True and decision["bundles"] == {"authz": "r42"}


def test_fts_plan_does_not_scan_with_like(session: Session) -> None:
    dialect = session.get_bind().dialect.name
    stmt = "SELECT id FROM opa_decisions WHERE "
    if dialect == "sqlite":
        plan = session.execute(
            text(
                "EXPLAIN QUERY PLAN SELECT rowid FROM opa_decisions_fts "
                "WHERE opa_decisions_fts MATCH :q"
            ),
            {"q": '"user5"'},
        ).all()
        assert any("VIRTUAL TABLE INDEX" in str(row[-1]) for row in plan)
    else:
        from store.models.policy import DECISION_SEARCH_DOCUMENT

        session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = session.execute(
            text(
                f"EXPLAIN {stmt}{DECISION_SEARCH_DOCUMENT} @@ to_tsquery('simple'::regconfig, :q)"
            ),
            {"q": "user5"},
        ).all()
        assert "ix_opa_decisions_search" in " ".join(str(r[0]) for r in plan)


def test_allow_deny_and_upload_cadence_frames(session: Session) -> None:
    series = allow_deny_frame(session, window=WINDOW, bucket="day")
    cadence = upload_cadence_frame(session, window=WINDOW)

    totals = series.groupby("path")[["allowed", "denied"]].sum().to_dict("index")
    assert totals == {
        "acme/deploy/allow": {"allowed": 2, "denied": 2},
        "acme/exports/allow": {"allowed": 4, "denied": 4},
    }
    assert list(series["bucket"].unique()) == [T0.replace(hour=0)]
    # Every instance uploaded 3 chunks 2 minutes apart: not OPA's default delay.
    assert cadence["uploads"].tolist() == [3, 3]
    assert cadence["default_delay"].tolist() == [False, False]


def test_drift_flags_the_instance_off_its_pin_or_in_error(engine: Engine) -> None:
    def report(instance: str, revision: str, at: datetime, **extra: Any) -> dict[str, Any]:
        return {
            "labels": {"id": instance, "environment": "prod"},
            "bundles": {"authz": {"active_revision": revision, **extra}},
        }

    with Session(engine) as s, s.begin():
        s.add(
            BundlePin(
                bundle="authz", environment="prod", revision="r43", pinned_at=T0, pinned_by="bo"
            )
        )
        ingest_status(s, report("a", "r42", T0), received_at=T0 - timedelta(hours=1))
        ingest_status(s, report("a", "r43", T0), received_at=T0 + timedelta(hours=1))
        ingest_status(
            s, report("b", "r42", T0, code="bundle_error"), received_at=T0 + timedelta(hours=1)
        )
        ingest_status(s, report("c", "r43", T0), received_at=T0 + timedelta(hours=1))
    with Session(engine) as s:
        later = drift_frame(s, as_of=T0 + timedelta(hours=2))
        before = drift_frame(s, as_of=T0 - timedelta(minutes=30))

    assert dict(zip(later["instance_id"], later["drifted"], strict=True)) == {
        "a": False,
        "b": True,
        "c": False,
    }
    assert later.set_index("instance_id").loc["b", "code"] == "bundle_error"
    # Before the pin existed nothing was pinned, so nothing is drift.
    assert before["pinned_revision"].isna().all() and not before["drifted"].any()


def test_common_words_give_the_same_answer_by_either_strategy(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    import store.queries.policy as queries

    selective = search(session, text="exports plain", allowed=False)
    monkeypatch.setattr(queries, "FTS_SELECTIVE_ROWS", 2)  # every word is now "common"
    walked = search(session, text="exports plain", allowed=False)

    assert selective == walked == ["d-011", "d-009", "d-007", "d-005", "d-003", "d-001"]
