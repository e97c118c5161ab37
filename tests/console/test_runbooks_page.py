"""Runbooks page and CLI over a served console (Flask test client, signed-in users) against
moto's Route 53 and the demo's simulated database: start a practice run and a recovery run,
watch the steps, pause / resume / abort from the page and from the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from console.cli.main import app as cli
from console.jobs.runbooks import run_pass
from store.models import ActionAudit, TrafficSample
from store.queries.failover import runbook_run, runbook_runs
from tests.peers_actions import create_weighted_record, read_weights
from tests.security.conftest import ORIGIN, PASSWORD, Console, build_console, callback_body, sign_in

PAGE = "console.pages.runbooks"
cli_runner = CliRunner()


@pytest.fixture
def console(tmp_path: Path, route53: Any, moto_url: str) -> Any:
    zone, _ = create_weighted_record(route53)
    served = build_console(
        tmp_path,
        demo_mode=False,
        secret_key="a-real-secret-for-the-runbook-tests-0123",
        aws={"endpoint_url": moto_url, "region": "us-east-1"},
        actions={
            "live_environments": ["stage"],
            "runbooks": {"databases": {"stage-db": {"provider": "simulated"}}},
        },
    )
    yield served, zone
    served.ctx.engine.dispose()


def healthy_traffic(console: Console, **rps: float) -> None:
    from store.ingest import utcnow

    with console.ctx.session() as session:
        for region, value in rps.items():
            session.add(
                TrafficSample(
                    ts=utcnow(), region=region, ingress="gw", requests_per_s=value, rate_5xx_per_s=0
                )
            )


def call(console: Console, client: Any, function: str, trigger: str, **values: Any) -> Any:
    body = callback_body(console.app, f"{PAGE}.{function}", trigger, values)
    response = client.post("/_dash-update-component", json=body, headers=ORIGIN)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json["response"]


def result_text(answer: dict[str, Any], output: str) -> str:
    return str(answer[output]["children"])


def user(console: Console, name: str) -> Any:
    client = console.client()
    sign_in(client, name)
    return client


def test_practice_run_from_the_page_changes_nothing_and_shows_each_step(console, route53):
    served, zone = console
    healthy_traffic(served, **{"us-east": 100.0, "us-west": 100.0})
    sre = user(served, "sre-user")

    practice = {"runbooks-book": "stage-db-failover", "runbooks-mode": "practice"}
    answer = call(served, sre, "start_run", "runbooks-start-btn", **practice)
    assert "practice run" in result_text(answer, "runbooks-start-result")
    run_pass(served.ctx, holder="test")

    with served.ctx.session() as session:
        (run,) = runbook_runs(session)
    assert run["status"] == "completed", run["message"]
    assert read_weights(route53, zone) == {"us-east": 50, "us-west": 50}
    shown = call(served, sre, "show_runbooks", "runbooks-interval")
    body = json.dumps(shown["runbooks-body"]["children"])
    assert '"data-step": "promote"' in body and '"data-status": "rehearsed"' in body
    assert "stage-db-failover" in body and shown["runbooks-run"]["value"] == run["run_id"]


def test_viewer_is_refused_and_changes_nothing(console):
    served, _ = console
    viewer = user(served, "viewer-user")
    body = callback_body(served.app, f"{PAGE}.start_run", "runbooks-start-btn",
                         {"runbooks-book": "stage-db-failover"})  # fmt: skip
    response = viewer.post("/_dash-update-component", json=body, headers=ORIGIN)
    assert response.status_code == 403
    with served.ctx.session() as session:
        assert runbook_runs(session) == []


def test_recovery_pause_resume_abort_from_the_page_and_the_cli(console, route53, monkeypatch):
    served, zone = console
    healthy_traffic(served, **{"us-east": 100.0, "us-west": 100.0})
    sre, captain = user(served, "sre-user"), user(served, "captain-user")
    call(served, sre, "start_run", "runbooks-start-btn",
         **{"runbooks-book": "stage-db-failover", "runbooks-mode": "recovery"})  # fmt: skip
    run_pass(served.ctx, holder="test")
    with served.ctx.session() as session:
        (run,) = runbook_runs(session)
    run_id = run["run_id"]
    assert run["status"] == "awaiting-approval"

    body = callback_body(served.app, f"{PAGE}.control", "runbooks-approve-btn",
                         {"runbooks-run": run_id})  # fmt: skip
    assert sre.post("/_dash-update-component", json=body, headers=ORIGIN).status_code == 403
    call(served, captain, "control", "runbooks-approve-btn", **{"runbooks-run": run_id})
    paused = call(served, sre, "control", "runbooks-pause-btn", **{"runbooks-run": run_id})
    assert "paused by sre-user" in result_text(paused, "runbooks-control-result")
    run_pass(served.ctx, holder="test")
    assert read_weights(route53, zone)["us-east"] == 50  # paused: the drain waits

    env = {
        "QUARTERDECK_DATABASE_URL": str(served.ctx.engine.url),
        "QUARTERDECK_VAR_DIR": str(served.ctx.settings.var_dir),
        "QUARTERDECK_AWS__ENDPOINT_URL": str(served.ctx.settings.aws.endpoint_url),
        "QUARTERDECK_ACTIONS__LIVE_ENVIRONMENTS": '["stage"]',
        "QUARTERDECK_ACTIONS__RUNBOOKS__DATABASES": '{"stage-db": {"provider": "simulated"}}',
        "QUARTERDECK_PASSWORD": PASSWORD,
        "QUARTERDECK_SECRET_KEY": "a-real-secret-for-the-runbook-tests-0123",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    resumed = cli_runner.invoke(cli, ["runbooks", "resume", run_id, "--as", "sre-user"], env=env)
    assert resumed.exit_code == 0, resumed.output
    run_pass(served.ctx, holder="test")
    assert read_weights(route53, zone) == {"us-east": 0, "us-west": 100}
    aborted = cli_runner.invoke(
        cli, ["runbooks", "abort", run_id, "--as", "sre-user", "--reason", "enough"], env=env
    )
    assert aborted.exit_code == 0, aborted.output
    assert "rollback drain" in aborted.output
    again = call(served, sre, "control", "runbooks-resume-btn", **{"runbooks-run": run_id})
    assert "Refused" in result_text(again, "runbooks-control-result")
    with served.ctx.session() as session:
        final = runbook_run(session, run_id)
        outcomes = {
            (a.actor, a.outcome) for a in session.query(ActionAudit).filter(
                ActionAudit.detail.is_not(None)
            )
        }  # fmt: skip
    assert final is not None and final["status"] == "aborted"
    assert {("sre-user", "pause"), ("sre-user", "resume"), ("sre-user", "abort")} <= outcomes


def test_the_demo_simulates_every_database_a_runbook_names(tmp_path: Path) -> None:
    from actions.promote import PromoteDatabase, SimulatedDatabase
    from console.wiring import build_service
    from tests.conftest import make_settings

    service = build_service(make_settings(tmp_path, demo_mode=True))
    promote = service.actions["db.promote"]
    assert isinstance(promote, PromoteDatabase) and "runbook.run" in service.actions
    assert isinstance(promote.provider("stage-db"), SimulatedDatabase)
