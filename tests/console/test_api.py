"""`/healthz`, `/readyz`, `/api/goals` through the Flask test client."""

import re

import pytest

from console.app import create_app
from console.context import AppContext
from tests.conftest import make_settings

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture
def demo_client(demo_ctx):
    return create_app(demo_ctx).server.test_client()


def test_api_goals_lists_every_goal_with_value_status_and_target(demo_client):
    response = demo_client.get("/api/goals")
    body = response.get_json()
    assert response.status_code == 200
    assert body["sprint"] == "sprint-27"
    assert ISO_UTC.match(body["window"]["start"]) and ISO_UTC.match(body["evaluated_at"])
    assert len(body["goals"]) == 11
    for goal in body["goals"]:
        assert {"id", "title", "status", "value", "unit", "target", "samples"} <= set(goal)
        assert set(goal["target"]) == {"op", "value", "unit"}
        assert goal["value"] is not None
    p50 = next(g for g in body["goals"] if g["id"] == "ci-lead-time-p50")
    assert p50["unit"] == "min" and p50["target"] == {"op": "<", "value": 15.0, "unit": "min"}
    statuses = {g["status"] for g in body["goals"]}
    assert {"met", "missed"} <= statuses


def test_api_goals_unknown_sprint_is_404_naming_the_known_ones(demo_client):
    response = demo_client.get("/api/goals?sprint=nope")
    assert response.status_code == 404
    assert response.get_json()["sprints"] == ["sprint-27"]


def test_healthz_and_readyz_on_a_migrated_store(demo_client):
    assert demo_client.get("/healthz").status_code == 200
    ready = demo_client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["status"] == "ready"


def test_readyz_is_503_naming_an_unmigrated_database(tmp_path):
    ctx = AppContext.from_settings(make_settings(tmp_path))
    response = create_app(ctx).server.test_client().get("/readyz")
    assert response.status_code == 503
    assert "run `quarterdeck db upgrade`" in response.get_json()["reason"]


def test_readyz_is_503_naming_an_unreachable_database_without_its_password(tmp_path):
    url = "postgresql+psycopg://qd:hunter2@127.0.0.1:1/quarterdeck"
    ctx = AppContext.from_settings(make_settings(tmp_path, database_url=url))
    response = create_app(ctx).server.test_client().get("/readyz")
    reason = response.get_json()["reason"]
    assert response.status_code == 503
    assert reason.startswith(
        "cannot reach database postgresql+psycopg://qd:***@127.0.0.1:1/quarterdeck"
    )
    assert "hunter2" not in reason
