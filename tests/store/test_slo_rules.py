"""Generated rules and on-call data: the same windows/factors/guard the console evaluates,
on-call validation as `file: field: problem`, the minimum-traffic guard."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from store.slo import (
    SloConfigError,
    SloDefinition,
    alert_expr,
    evaluate_budget,
    load_oncall,
    load_slos,
    with_range,
)

PROJECT = Path(__file__).resolve().parents[2]


def test_range_selectors_follow_the_window() -> None:
    query = 'sum(rate(x{a="[5m]"}[5m])) / sum(rate(y[30s]))'
    assert with_range(query, timedelta(hours=6)) == 'sum(rate(x{a="[6h]"}[6h])) / sum(rate(y[6h]))'


def test_fast_burn_expression_pairs_and_guard() -> None:
    slo = load_slos(PROJECT / "data/slos")[1]
    expr = alert_expr(slo, "page")
    assert slo.service == "gateway"
    assert (
        'slo:sli_error:ratio_rate1h{service="gateway",slo="availability"} > (14.4 * 0.001)' in expr
    )
    assert 'slo:sli_error:ratio_rate30m{service="gateway",slo="availability"} > (6 * 0.001)' in expr
    assert 'slo:sli_total:rate1h{service="gateway",slo="availability"} > 0.05' in expr


def test_min_traffic_guard_keeps_one_error_on_a_quiet_service_from_paging() -> None:
    slo = SloDefinition.model_validate(
        {
            "service": "quiet",
            "objective": 99.9,
            "source": {"good": "g", "total": "t"},
            "policy": {"min_rate": 0.05},
        }
    )
    # 1 bad of 2 events in an hour: burn 500× but 0.0006 events/s.
    sums = {w: (1.0, 2.0) for w in (timedelta(minutes=5), timedelta(hours=1))}
    status = evaluate_budget(slo, sums=sums, samples=2)
    assert status.firing == []
    assert status.pairs[0].guarded


def test_oncall_problems_read_file_field_problem(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.yaml").write_text("steps: [a]\n")
    (tmp_path / "x.yaml").write_text(
        "service: x\nescalation:\n  - {level: 2, rotation: r, receiver: r, webhook_url: ftp://x}\n"
        "runbook: {template: nope}\n"
    )
    with pytest.raises(SloConfigError) as err:
        load_oncall(tmp_path)
    problems = err.value.problems
    assert any(p.startswith(f"{tmp_path / 'x.yaml'}: escalation.0.webhook_url:") for p in problems)


def test_shipped_oncall_covers_every_slo_service() -> None:
    slos = load_slos(PROJECT / "data/slos")
    oncall = load_oncall(PROJECT / "data/oncall", slos=slos)
    assert {o.service for o in oncall} == {s.service for s in slos}
    assert all(o.steps and o.escalation[0].after == "0m" for o in oncall)
