"""Failover page, its API and the drill commands without a browser."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import flask
import pytest
import typer
from dash._callback_context import context_value
from dash._utils import AttributeDict
from plotly.utils import PlotlyJSONEncoder
from typer.testing import CliRunner

from collectors import failover as source
from console.app import create_app
from console.auth.identity import Identity
from console.cli import collect_traffic as _collect_traffic
from console.cli.main import app as cli
from console.components import failover as view
from demo.simulator import DRILL_SCRIPT, play_scripted_drill
from store.queries.failover import live_run
from tests.conftest import free_port

runner = CliRunner()


def text_of(component: Any) -> str:
    return json.dumps(component, cls=PlotlyJSONEncoder, ensure_ascii=False)


def has_props(component: Any, **attrs: str) -> bool:
    """Whether some element of the rendered tree carries all ``attrs`` (`data_x` → `data-x`)."""
    wanted = {k.replace("_", "-"): v for k, v in attrs.items()}

    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            props = node.get("props", {})
            if isinstance(props, dict) and all(props.get(k) == v for k, v in wanted.items()):
                return True
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    return walk(json.loads(text_of(component)))


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "QUARTERDECK_DEMO_MODE": "true",
        "QUARTERDECK_VAR_DIR": str(tmp_path),
        "QUARTERDECK_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        **extra,
    }


def test_live_page_shows_the_last_demo_drill_with_rto_rpo_phases_and_history(demo_ctx) -> None:
    create_app(demo_ctx)
    from console.pages import failover

    body, last_ok = failover.show_failover(0, None, None, None)
    text = text_of(body)

    assert "stage-drill-20251119T140000Z" in text and "COMPLETE" in text
    assert "7 min 40 s" in text  # RTO 460 s, met
    assert has_props(body, data_phase="writable", data_reached="true")
    assert "/api/failover/runs/stage-drill-20251113T150000Z" in text  # history links evidence
    assert last_ok is not None


def test_selected_run_is_shown_from_the_query_string(demo_ctx) -> None:
    create_app(demo_ctx)
    from console.pages import failover

    layout = failover.layout(run="stage-drill-20251113T150000Z")
    body, _ = failover.show_failover(0, None, "stage-drill-20251113T150000Z", None)

    assert "stage-drill-20251113T150000Z" in text_of(layout)
    assert "Selected run." in text_of(body) and "MISSED" in text_of(body)  # 14 min RTO


def test_api_lists_runs_and_details_the_same_figures(demo_ctx) -> None:
    client = create_app(demo_ctx).server.test_client()

    runs = client.get("/api/failover/runs").get_json()["runs"]
    detail = client.get(f"/api/failover/runs/{runs[0]['id']}").get_json()
    missing = client.get("/api/failover/runs/nope")

    assert [r["id"] for r in runs] == [
        "stage-drill-20251119T140000Z",
        "stage-drill-20251113T150000Z",
    ]
    assert runs[0]["rto_s"] == detail["rto_s"] == 460.0 and runs[0]["rto_met"] is True
    assert runs[1]["rto_met"] is False and runs[1]["rpo_met"] is False
    assert detail["phases"] == runs[0]["phases"] and detail["lag"]
    assert missing.status_code == 404


def test_running_clock_is_at_risk_after_eight_minutes_and_missed_after_ten() -> None:
    assert view._status(300, 600, final=False) == "running"
    assert view._status(500, 600, final=False) == "at-risk"
    assert view._status(601, 600, final=False) == "missed"
    assert view.duration(460) == "7 min 40 s" and view.duration(None) == "—"


def test_drill_button_starts_marks_and_ends_a_run(ctx) -> None:
    dash_app = create_app(ctx)
    from console.pages import failover

    def click(button: str) -> str:
        context_value.set(
            AttributeDict(triggered_inputs=[{"prop_id": f"{button}.n_clicks", "value": 1}])
        )
        with dash_app.server.test_request_context("/_dash-update-component"):
            flask.g.identity = Identity("sam", frozenset({"sre"}), "local")
            return failover.drill_action(1, 1, 1, "promoted")

    started = click(failover.DRILL_START)
    marked = click(failover.DRILL_MARK)
    ended = click(failover.DRILL_END)

    assert started.startswith("Started stage-drill-") and ": promoted at " in marked
    assert ": complete at " in ended
    with ctx.session() as session:
        run = live_run(session, now=datetime.now(UTC))
    assert run is not None and not run.in_progress and "promoted" in run.phases


@pytest.mark.parametrize("who", [None, Identity("vera", frozenset({"viewer"}), "local")])
def test_drill_button_is_refused_without_the_sre_role_even_in_demo_mode(ctx, who) -> None:
    dash_app = create_app(ctx)
    from console.pages import failover

    assert ctx.settings.demo_mode
    context_value.set(
        AttributeDict(
            triggered_inputs=[{"prop_id": f"{failover.DRILL_START}.n_clicks", "value": 1}]
        )
    )
    with dash_app.server.test_request_context("/_dash-update-component"):
        flask.g.identity = who
        answer = failover.drill_action(1, None, None, None)

    assert answer.startswith("Refused")
    with ctx.session() as session:
        assert live_run(session, now=datetime.now(UTC)) is None


def test_drill_cli_start_mark_end(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0

    start = runner.invoke(cli, ["failover", "drill", "start"], env=env)
    twice = runner.invoke(cli, ["failover", "drill", "start"], env=env)
    bad = runner.invoke(cli, ["failover", "drill", "mark", "done"], env=env)
    mark = runner.invoke(cli, ["failover", "drill", "mark", "writable"], env=env)
    end = runner.invoke(cli, ["failover", "drill", "end"], env=env)
    orphan = runner.invoke(cli, ["failover", "drill", "mark", "promoted"], env=env)

    assert start.exit_code == 0 and start.output.startswith("stage-drill-")
    assert twice.exit_code == 1 and "still open" in twice.output
    assert bad.exit_code == 2 and "phase must be one of" in bad.output
    assert mark.exit_code == 0 and mark.output.strip().endswith(": writable")
    assert end.exit_code == 0 and end.output.strip().endswith(": complete")
    assert orphan.exit_code == 1 and "no open run" in orphan.output


def test_drill_simulate_plays_every_phase(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0

    result = runner.invoke(cli, ["failover", "drill", "simulate", "--speed", "1000"], env=env)

    assert result.exit_code == 0, result.output
    for _offset, phase, _message in DRILL_SCRIPT:
        assert (phase or "log") in result.output
    assert result.output.strip().endswith(": complete")


def test_scripted_drill_records_lag_before_promotion_for_the_rpo(ctx) -> None:
    key = play_scripted_drill(ctx.sessions, speed=1.0, sleep=lambda _s: None)

    with ctx.session() as session:
        run = live_run(session, now=datetime.now(UTC) + timedelta(seconds=1))
    assert run is not None and run.run_key == key and not run.in_progress
    assert list(run.phases) == ["started", "promoted", "writable", "traffic_shifted", "complete"]
    assert run.rpo_s == 2.5 and len(run.lag) >= 2


def test_collect_prometheus_against_nothing_exits_1_and_records_the_failure(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path, QUARTERDECK_PROMETHEUS__URL=f"http://127.0.0.1:{free_port()}")
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    collect = typer.Typer()
    collect.command("prometheus")(_collect_traffic.prometheus)
    collect.command("failover")(_collect_traffic.failover)

    result = runner.invoke(collect, ["prometheus"], env=env)
    unconfigured = runner.invoke(collect, ["failover"], env=env)

    assert result.exit_code == 1 and "prometheus: failed" in result.output
    assert unconfigured.exit_code == 1 and "QUARTERDECK_FAILOVER__" in unconfigured.output


def test_probe_marks_promotion_on_an_open_drill(ctx) -> None:
    """Without a PostgreSQL pair: a node callable that fails is an error, not a crash."""

    def down() -> Any:
        raise ConnectionRefusedError("connection refused")

    with ctx.session() as session:
        source.start_run(
            session, environment="stage", at=datetime.now(UTC), kind="drill", source="manual"
        )

    report = source.probe_tick(ctx.sessions, environment="stage", primary=down, standby=down)

    assert report.run_key is not None and report.marked == []
    assert len(report.errors) == 2


@pytest.mark.parametrize("phase", ["started", "promoted"])
def test_phase_timeline_lists_five_phases_in_order(demo_ctx, phase: str) -> None:
    with demo_ctx.session() as session:
        run = live_run(session, now=datetime.now(UTC))
    assert run is not None
    timeline = text_of(view.phase_timeline(run))
    assert timeline.index("Started") < timeline.index("Promoted") < timeline.index("Complete")
    assert has_props(view.phase_timeline(run), data_phase=phase, data_reached="true")


def test_failover_freshness_says_stale_since_when_a_running_drill_goes_quiet() -> None:
    from store.queries.failover import Freshness

    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    quiet = Freshness(
        last_ok_at=now - timedelta(minutes=2),
        last_sample_at=now - timedelta(minutes=3),
        last_error="primary unreachable: OperationalError",
        last_error_at=now - timedelta(seconds=10),
    )

    running = text_of(view.freshness_line(quiet, now=now, in_progress=True))
    finished = text_of(view.freshness_line(quiet, now=now, in_progress=False))

    assert "Stale since 2026-03-02T11:58:00Z — last failure: primary unreachable" in running
    assert "Stale since" not in finished and "Latest data at 2026-03-02T11:58:00Z" in finished


def test_overview_failover_cards_name_the_run_they_measure(demo_ctx) -> None:
    create_app(demo_ctx)
    from console.pages import overview

    board = json.loads(text_of(overview.show_board("sprint-27", "sprint")))

    def links(node: Any) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if isinstance(node, dict):
            props = node.get("props", {})
            if isinstance(props, dict) and "qd-run-link" in str(props.get("className", "")):
                found.append((str(props["href"]), str(props["children"])))
            for v in node.values():
                found += links(v)
        elif isinstance(node, list):
            for v in node:
                found += links(v)
        return found

    run_links = links(board)
    assert run_links, "no failover card names its run"
    assert {href for href, _ in run_links} == {"/failover?run=stage-drill-20251119T140000Z"}
    assert all("stage-drill-20251119T140000Z" in text for _, text in run_links)


def test_latest_run_key_reads_only_the_latest_detail() -> None:
    from store.queries.failover import latest_run_key

    assert latest_run_key("latest: stage-drill-1 (2 measured)") == "stage-drill-1"
    assert latest_run_key("no failover runs") is None
    assert latest_run_key("latest: ") is None


def test_history_badges_the_rpo_miss_of_the_13_november_run(demo_ctx) -> None:
    from store.queries.failover import list_runs

    with demo_ctx.session() as session:
        runs = list_runs(session)
    table = view.history_table(runs, selected=None)

    assert has_props(table, data_run="stage-drill-20251113T150000Z")
    assert has_props(table, data_rpo_status="missed")  # RPO 6 min 51 s against 5 min
    assert has_props(table, data_rpo_status="met")  # the 19 November run
    assert "6 min 51 s" in text_of(table)


def test_named_run_has_a_timeline_with_every_phase_and_the_rto_clock(demo_ctx) -> None:
    from store.queries.failover import get_run

    now = datetime(2025, 11, 24, tzinfo=UTC)
    with demo_ctx.session() as session:
        run = get_run(session, "stage-drill-20251113T150000Z", now=now)
    assert run is not None

    fig = view.timeline_figure(run, now=now)
    marked = {a.text for a in fig.layout.annotations}
    names = [t.name for t in fig.data]

    assert {view.PHASE_LABELS[p] for p in run.phases} <= marked
    assert len(run.phases) == 5 and "RTO target 10 min 00 s" in marked
    assert any(n.startswith("RTO 14 min") and "MISSED" in n for n in names)
    assert "Timeline of stage-drill-20251113T150000Z" in fig.layout.title.text
    lag_marks = {a.text for a in view.lag_figure(run).layout.annotations}
    assert lag_marks == set(run.phases)  # every reached phase, not only two


def test_unknown_run_in_the_query_string_is_said_not_hidden(demo_ctx) -> None:
    create_app(demo_ctx)
    from console.pages import failover

    body, _ = failover.show_failover(0, None, "stage-drill-nope", None)

    assert "No run stage-drill-nope is recorded" in text_of(body)
    assert "stage-drill-20251119T140000Z" in text_of(body)
