"""The `quarterdeck` command as a person runs it."""

from pathlib import Path

import yaml
from typer.testing import CliRunner

from console.cli.main import app
from store.migrate import head_revision

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "QUARTERDECK_DEMO_MODE": "true",
        "QUARTERDECK_VAR_DIR": str(tmp_path),
        "QUARTERDECK_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        **extra,
    }


def test_goals_check_reports_each_problem_and_exits_nonzero(tmp_path):
    raw = yaml.safe_load((ROOT / "data/sprints/sprint-27.yaml").read_text())
    raw["goals"][0]["aggregation"] = "p42"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["goals", "check", str(bad)], env=_env(tmp_path))
    assert result.exit_code == 2
    assert (
        f"{bad}: ci-lead-time-p50: aggregation: 'p42' is not offered by "
        "ci.pr_preview_lead_time (one of p50, p95)"
    ) in result.output


def test_goals_check_accepts_the_shipped_sprint(tmp_path):
    result = runner.invoke(app, ["goals", "check"], env=_env(tmp_path))
    assert result.exit_code == 0, result.output
    assert "sprint-27.yaml: ok (11 goals, 3 gates)" in result.output


def test_unreachable_database_is_one_line_without_password(tmp_path):
    env = _env(tmp_path, QUARTERDECK_DATABASE_URL="postgresql+psycopg://qd:s3cret@127.0.0.1:1/qd")
    result = runner.invoke(app, ["db", "upgrade"], env=env)
    assert result.exit_code == 3
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "error: cannot reach database postgresql+psycopg://qd:***@127.0.0.1:1/qd"
    )
    assert "s3cret" not in result.output


def test_db_upgrade_then_seed_refuses_nothing_and_reports_schema(tmp_path):
    result = runner.invoke(app, ["db", "upgrade"], env=_env(tmp_path))
    assert result.exit_code == 0, result.output
    head = head_revision()
    assert f"schema empty → {head}" in result.output
    again = runner.invoke(app, ["db", "upgrade"], env=_env(tmp_path))
    assert f"schema {head} → {head}" in again.output


def test_demo_seed_on_unmigrated_database_says_what_to_run(tmp_path):
    result = runner.invoke(app, ["demo", "seed"], env=_env(tmp_path))
    assert result.exit_code == 3
    assert "run `quarterdeck db upgrade` first" in result.output


def test_placeholder_secret_is_refused_outside_demo_mode(tmp_path):
    env = _env(tmp_path, QUARTERDECK_DEMO_MODE="false")
    result = runner.invoke(app, ["db", "upgrade"], env=env)
    assert result.exit_code == 2
    assert "QUARTERDECK_SECRET_KEY is a placeholder" in result.output


def test_goals_show_prints_every_goal_from_the_store(demo_ctx, tmp_path):
    env = _env(tmp_path, QUARTERDECK_DATABASE_URL=demo_ctx.settings.resolved_database_url)
    result = runner.invoke(app, ["goals", "show"], env=env)
    assert result.exit_code == 0, result.output
    assert "ci-lead-time-p50" in result.output and "MISSED" in result.output
