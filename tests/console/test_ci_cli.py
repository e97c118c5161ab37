"""`quarterdeck collect github` as a person runs it, against the local GitHub replay server."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from console.cli.main import app
from store.db import make_engine
from store.migrate import upgrade
from store.models import CiRun, PullRequest
from tests.github_replay import REPO, replay, story

runner = CliRunner()


def _env(tmp_path: Path, api_url: str) -> dict[str, str]:
    return {
        "QUARTERDECK_DEMO_MODE": "true",
        "QUARTERDECK_VAR_DIR": str(tmp_path),
        "QUARTERDECK_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "QUARTERDECK_GITHUB__API_URL": api_url,
        "QUARTERDECK_GITHUB__TOKEN": "ghp_cli_test",
    }


def test_collect_github_backfills_then_a_rerun_adds_nothing(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    upgrade(engine)
    with replay(story(), page_size=2) as server:
        env = _env(tmp_path, server.url)
        first = runner.invoke(
            app, ["collect", "github", "--repo", REPO, "--since", "2025-11-01"], env=env
        )
        second = runner.invoke(app, ["collect", "github", "--repo", REPO], env=env)
        auth = {r.headers.get("authorization") for r in server.requests}

    assert first.exit_code == 0, first.output
    assert (
        f"{REPO}: " in first.output and "rejected (pulls 3, runs 2, deployments 3)" in first.output
    )
    assert second.exit_code == 0, second.output
    assert f"{REPO}: 0 new rows" in second.output
    assert "unchanged (304): pulls, runs, deployments" in second.output
    assert auth == {"Bearer ghp_cli_test"}
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(PullRequest)) == 5
        assert session.scalar(select(func.count()).select_from(CiRun)) == 5
    engine.dispose()


def test_collect_github_without_a_repo_names_the_setting(tmp_path: Path) -> None:
    result = runner.invoke(app, ["collect", "github"], env=_env(tmp_path, "http://127.0.0.1:9"))

    assert result.exit_code == 2
    assert "QUARTERDECK_GITHUB__REPOS" in result.output


def test_collect_github_reports_an_unreachable_github_and_exits_nonzero(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    upgrade(engine)
    env = {**_env(tmp_path, "http://127.0.0.1:9"), "QUARTERDECK_GITHUB__MAX_RETRIES": "0"}

    result = runner.invoke(app, ["collect", "github", "--repo", REPO], env=env)

    assert result.exit_code == 1
    assert f"error: {REPO}: GET http://127.0.0.1:9/repos/{REPO}/pulls" in result.output
    engine.dispose()


def test_background_poller_starts_only_when_configured_and_fills_the_store(
    tmp_path: Path,
) -> None:
    import time

    from console.context import AppContext
    from console.jobs import github as github_poller
    from tests.conftest import make_settings

    bare = AppContext.from_settings(make_settings(tmp_path))
    assert github_poller.start(bare) is None  # no repos, no token: nothing runs
    bare.engine.dispose()

    with replay(story()) as server:
        settings = make_settings(
            tmp_path,
            github={"repos": [REPO], "token": "ghp_service", "api_url": server.url},
        )
        ctx = AppContext.from_settings(settings)
        upgrade(ctx.engine)
        stop = github_poller.start(ctx)
        assert stop is not None
        try:
            deadline = time.monotonic() + 30
            stored = 0
            while time.monotonic() < deadline and stored < 5:
                with ctx.session() as session:
                    stored = session.scalar(select(func.count()).select_from(CiRun)) or 0
                time.sleep(0.1)
        finally:
            stop()
    assert stored == 5
    ctx.engine.dispose()
