from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from collectors.github import ingest_webhook
from store.metrics import Window
from store.models import CiRun, IngestReject, Postmortem
from store.queries.ci import lead_time_frame, waiting_shas_frame

T = datetime(2025, 11, 12, 9, tzinfo=UTC)
REPO = {"full_name": "acme/web"}


def _pr(number: int, sha: str, at: datetime, action: str = "opened") -> dict:
    return {
        "action": action,
        "repository": REPO,
        "pull_request": {
            "number": number,
            "title": "t",
            "state": "open",
            "user": {"login": "ana"},
            "head": {"sha": sha, "ref": "ana/x"},
            "created_at": T.isoformat(),
            "updated_at": at.isoformat(),
            "html_url": f"https://github.com/acme/web/pull/{number}",
        },
    }


def _run(run_id: int, sha: str, at: datetime, prs: list, attempt: int = 1) -> dict:
    return {
        "action": "completed",
        "repository": REPO,
        "workflow_run": {
            "id": run_id,
            "run_attempt": attempt,
            "event": "pull_request",
            "head_sha": sha,
            "status": "completed",
            "conclusion": "success",
            "pull_requests": prs,
            "created_at": at.isoformat(),
        },
    }


def _ready(
    dep_id: int, sha: str, env: str, at: datetime, state: str = "success", status_id: int = 1
) -> dict:
    return {
        "action": "created",
        "repository": REPO,
        "deployment": {"id": dep_id, "sha": sha, "environment": env, "created_at": at.isoformat()},
        "deployment_status": {
            "id": dep_id * 10 + status_id,
            "state": state,
            "created_at": at.isoformat(),
        },
    }


def test_fork_pr_run_maps_to_its_pr_by_head_sha(engine):
    sha = "f" * 40
    with Session(engine) as session, session.begin():
        ingest_webhook(session, "pull_request", _pr(7, sha, T), received_at=T)
        ingest_webhook(
            session, "workflow_run", _run(70, sha, T + timedelta(seconds=9), []), received_at=T
        )
        ingest_webhook(
            session,
            "deployment_status",
            _ready(700, sha, "pr-7", T + timedelta(minutes=12)),
            received_at=T,
        )
    window = Window(T - timedelta(days=1), T + timedelta(days=1))
    with Session(engine) as session:
        df = lead_time_frame(session, window=window, repo="acme/web")
    assert df["pr"].tolist() == [7]
    assert df["seconds"].tolist() == [12 * 60 - 9]


def test_lead_time_ends_at_first_success_in_a_preview_environment_only(engine):
    sha = "a" * 40
    with Session(engine) as session, session.begin():
        ingest_webhook(session, "workflow_run", _run(1, sha, T, [{"number": 3}]), received_at=T)
        ingest_webhook(
            session,
            "workflow_run",
            _run(1, sha, T + timedelta(minutes=30), [{"number": 3}], attempt=2),
            received_at=T,
        )
        ingest_webhook(
            session,
            "deployment_status",
            _ready(5, sha, "production", T + timedelta(minutes=5)),
            received_at=T,
        )
        ingest_webhook(
            session,
            "deployment_status",
            _ready(6, sha, "pr-3", T + timedelta(minutes=8), "failure", 1),
            received_at=T,
        )
        ingest_webhook(
            session,
            "deployment_status",
            _ready(6, sha, "pr-3", T + timedelta(minutes=11), "success", 2),
            received_at=T,
        )
        ingest_webhook(
            session,
            "deployment_status",
            _ready(6, sha, "pr-3", T + timedelta(minutes=40), "success", 3),
            received_at=T,
        )
        runs = session.scalars(select(CiRun.run_attempt).order_by(CiRun.run_attempt)).all()
    window = Window(T - timedelta(days=1), T + timedelta(days=1))
    with Session(engine) as session:
        df = lead_time_frame(session, window=window)
    assert runs == [1, 2]  # a re-run is a new attempt, not a new SHA
    assert df["seconds"].tolist() == [11 * 60]
    assert df["pr"].tolist() == [3]


def test_sha_without_preview_is_counted_as_waiting_not_dropped(engine):
    with Session(engine) as session, session.begin():
        ingest_webhook(
            session, "workflow_run", _run(9, "c" * 40, T, [{"number": 4}]), received_at=T
        )
    window = Window(T - timedelta(days=1), T + timedelta(days=1))
    with Session(engine) as session:
        done = lead_time_frame(session, window=window)
        waiting = waiting_shas_frame(session, as_of=T + timedelta(hours=1), since=window.start)
    assert done.empty
    assert waiting["sha"].tolist() == ["c" * 40]
    assert waiting["waiting_s"].tolist() == [3600.0]


def test_invalid_webhook_is_dead_lettered_with_reason(engine):
    with Session(engine) as session, session.begin():
        result = ingest_webhook(
            session,
            "workflow_run",
            {"repository": REPO, "workflow_run": {"id": "x"}},
            received_at=T,
        )
    with Session(engine) as session:
        reasons = session.scalars(select(IngestReject.reason)).all()
    assert result.rejected == 1
    assert reasons == ["workflow_run: workflow_run.id: expected int, got str"]


def test_unhandled_event_is_ignored_and_counted(engine):
    with Session(engine) as session, session.begin():
        result = ingest_webhook(session, "star", {"repository": REPO}, received_at=T)
    assert (result.ignored, result.stored, result.rejected) == (1, 0, 0)


def test_postmortem_bot_issue_is_recorded_with_action_items(engine):
    from collectors.incidents import ingest_incidents

    issue = {
        "number": 88,
        "title": "Postmortem: INC-9",
        "html_url": "https://x/88",
        "labels": [{"name": "postmortem"}],
        "user": {"login": "postmortem-bot[bot]"},
        "created_at": T.isoformat(),
        "body": "- [x] fix it\n- [ ] doc it\n",
    }
    with Session(engine) as session, session.begin():
        ingest_incidents(
            session,
            [{"key": "INC-9", "title": "t", "severity": "sev2", "started_at": T.isoformat()}],
            received_at=T,
        )
        ingest_webhook(
            session,
            "issues",
            {"action": "opened", "repository": REPO, "issue": issue},
            received_at=T,
        )
    with Session(engine) as session:
        pm = session.scalars(select(Postmortem)).one()
    assert pm.incident_key == "INC-9"
    assert pm.action_items == [{"text": "fix it", "done": True}, {"text": "doc it", "done": False}]
