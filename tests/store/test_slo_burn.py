"""Error-budget math: burn rates per SRE-workbook window pair against hand-computed fixtures,
budget remaining, time to exhaustion and the freeze policy, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from store.ingest import upsert
from store.metrics import Window
from store.models import SloSample
from store.queries.reliability import budget_frame, budget_status, burn_frame
from store.slo import (
    SloConfigError,
    SloDefinition,
    evaluate_budget,
    load_slos,
    time_to_exhaustion,
)

PROJECT = Path(__file__).resolve().parents[2]
T = datetime(2025, 11, 18, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)
# Bad events placed so each window sees a different, hand-countable share (1 000 events a step).
BAD = {
    T: 20,
    T - timedelta(minutes=40): 160,
    T - timedelta(hours=3): 500,
    T - timedelta(days=2): 1000,
}
QUIET_TOTAL = 10_000_000  # one error-free step 10 days back: only the 30 d window sees it


def slo(**overrides: object) -> SloDefinition:
    data: dict[str, object] = {
        "service": "gateway",
        "slo": "availability",
        "objective": 99.9,
        "window": "30d",
        "source": {"good": "sum(good)", "total": "sum(total)"},
    }
    data.update(overrides)
    return SloDefinition.model_validate(data)


def _load(engine, rows):  # type: ignore[no-untyped-def]
    with Session(engine) as session, session.begin():
        upsert(session, SloSample, rows, conflict=("service", "slo", "ts"))


@pytest.fixture
def burning(engine):  # type: ignore[no-untyped-def]
    rows = []
    for k in range(864):  # 3 days of 5-minute steps ending at T
        ts = T - k * STEP
        rows.append(
            {
                "service": "gateway",
                "slo": "availability",
                "ts": ts,
                "total": 1000.0,
                "good": 1000.0 - BAD.get(ts, 0),
            }
        )
    rows.append(
        {
            "service": "gateway",
            "slo": "availability",
            "ts": T - timedelta(days=10),
            "total": float(QUIET_TOTAL),
            "good": float(QUIET_TOTAL),
        }
    )
    _load(engine, rows)
    return engine


def test_burn_rates_equal_hand_computed_values_for_each_window_pair(burning):
    with Session(burning) as session:
        status = budget_status(session, slo(), as_of=T)

    burn = {w.total_seconds(): v for w, v in status.burn.items()}
    # window: bad / total / budget (0.001)
    assert burn[300] == pytest.approx(20 / 1000 / 0.001)  # 5 m: 20.0
    assert burn[1800] == pytest.approx(20 / 6000 / 0.001)  # 30 m: 3.33
    assert burn[3600] == pytest.approx(180 / 12000 / 0.001)  # 1 h: 15.0
    assert burn[21600] == pytest.approx(680 / 72000 / 0.001)  # 6 h: 9.44
    assert burn[259200] == pytest.approx(1680 / 864000 / 0.001)  # 3 d: 1.94
    firing = {(p.pair.label, p.firing) for p in status.pairs}
    assert firing == {("1h/5m × 14.4", True), ("6h/30m × 6", False), ("3d/6h × 1", True)}


def test_budget_remaining_and_time_to_exhaustion_follow_the_slo_window(burning):
    with Session(burning) as session:
        status = budget_status(session, slo(), as_of=T)

    period_burn = 1680 / (864_000 + QUIET_TOTAL) / 0.001
    assert status.budget_remaining == pytest.approx(1 - period_burn)
    assert status.time_to_exhaustion is not None
    expected = (1 - period_burn) * timedelta(days=30).total_seconds() / 15.0
    assert status.time_to_exhaustion.total_seconds() == pytest.approx(expected)
    assert status.samples == 865


def test_page_alert_freezes_and_the_reason_names_the_window_pair(burning):
    with Session(burning) as session:
        status = budget_status(session, slo(), as_of=T)
        later = budget_status(session, slo(), as_of=T + timedelta(hours=2))

    assert status.state == "freeze"
    assert "page burn alert 1h/5m × 14.4" in status.reason
    assert later.state == "normal"  # the fast burn is over; the budget is not spent


def test_spent_budget_freezes_without_any_alert():
    definition = slo(policy={"freeze_below_remaining": 10})
    sums = {
        w: (999.5, 1000.0)
        for w in (
            timedelta(minutes=5),
            timedelta(minutes=30),
            timedelta(hours=1),
            timedelta(hours=6),
            timedelta(days=3),
        )
    }
    sums[timedelta(days=30)] = (998_500.0, 1_000_000.0)  # burn 1.5: 50 % over budget

    status = evaluate_budget(definition, sums=sums, samples=10)

    assert status.budget_remaining == pytest.approx(-0.5)
    assert status.firing == []
    assert status.state == "freeze"
    assert "error budget remaining -50.0 % is below 10 %" in status.reason
    assert time_to_exhaustion(-0.5, 1.0, timedelta(days=30)) == timedelta(0)


def test_no_samples_is_no_data_and_never_freezes(engine):
    with Session(engine) as session:
        status = budget_status(session, slo(), as_of=T)
        frame = budget_frame(session, [slo()], as_of=T)

    assert status.no_data and status.state == "normal"
    assert frame["state"].tolist() == ["no_data"]


def test_burn_frame_rolls_the_same_rates_as_the_point_query(burning):
    window = Window(T - timedelta(hours=2), T + STEP)
    with Session(burning) as session:
        df = burn_frame(session, slo(), window=window)

    last = df.iloc[-1]
    assert last["ts"] == T
    assert last["burn_1h"] == pytest.approx(15.0)
    assert last["burn_5m"] == pytest.approx(20.0)


def test_shipped_slo_files_load_and_cover_the_demo_services():
    slos = load_slos(PROJECT / "data" / "slos")
    assert {s.service for s in slos} == {"gateway", "web", "exports-api"}
    assert all(s.policy.freeze_on == ["page"] for s in slos)


def test_invalid_slo_file_names_the_file_and_field(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "service: api\nobjective: 120\nwindow: 30 days\nsource: {good: g, total: t}\n"
    )
    with pytest.raises(SloConfigError) as err:
        load_slos(tmp_path)
    problems = "\n".join(err.value.problems)
    assert f"{tmp_path / 'bad.yaml'}: objective:" in problems
    assert f"{tmp_path / 'bad.yaml'}: window:" in problems
