"""A full DNS weight flip in Chromium: sign in, a refused bad weight, plan, rehearse (dry run:
audited, nothing changes), then apply live against moto's Route 53 (weights read back changed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import select

from console.app import create_app
from console.auth.users import add_user
from console.context import AppContext
from store.migrate import upgrade
from store.models import ActionAudit
from tests.conftest import free_port, make_settings
from tests.peers_actions import (
    create_weighted_record,
    moto_server,
    read_weights,
    reset_moto,
    route53_client,
)

pytestmark = pytest.mark.browser

TIMEOUT = 30
PASSWORD = "sam-password-123"


@pytest.fixture
def flip_ctx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[AppContext, Any, str]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto_server() as url:
        reset_moto(url)  # moto's backend is per process: other tests' zones would linger
        client = route53_client(url)
        zone, _ = create_weighted_record(client)
        settings = make_settings(
            tmp_path,
            auth={"allow_anonymous_read": False},
            aws={"endpoint_url": url},
            actions={"live_environments": ["stage"]},
        )
        context = AppContext.from_settings(settings)
        upgrade(context.engine)
        with context.session() as session:
            add_user(session, "sam", PASSWORD, ["sre"])
        yield context, client, zone
        context.engine.dispose()


def test_a_flip_dry_run_then_live_from_the_modal(
    browser_available: None, dash_duo: Any, flip_ctx: tuple[AppContext, Any, str]
) -> None:
    context, r53, zone = flip_ctx
    dash_duo.start_server(create_app(context), navigate=False, port=free_port())
    base = dash_duo.server.url.rstrip("/")
    driver = dash_duo.driver

    driver.get(f"{base}/sign-in?next=/actions")
    driver.find_element("id", "sign-in-user").send_keys("sam")
    driver.find_element("id", "sign-in-password").send_keys(PASSWORD)
    driver.find_element("id", "sign-in-submit").click()
    dash_duo.wait_for_contains_text("#actions-who", "Signed in as sam (sre)", timeout=TIMEOUT)
    driver.get(f"{base}/actions?env=stage&record={quote('api.example.com.')}")
    dash_duo.wait_for_contains_text("#actions-who", "Signed in as sam", timeout=TIMEOUT)

    weights = dash_duo.find_element("#actions-weights")
    weights.send_keys("us-east=300")
    dash_duo.find_element("#actions-plan-btn").click()
    dash_duo.wait_for_contains_text("#actions-form-message", "outside 0–255", timeout=TIMEOUT)
    dash_duo.clear_input(weights)
    weights.send_keys("us-east=20,us-west=80")
    dash_duo.find_element("#actions-plan-btn").click()
    dash_duo.wait_for_contains_text("#actions-modal-body", "Every rule passes.", timeout=TIMEOUT)
    assert "max-step-change" in dash_duo.find_element("#actions-modal-body").text
    dash_duo.find_element("#actions-reason").send_keys("rehearse the shift west")
    dash_duo.find_element("#actions-apply-btn").click()
    dash_duo.wait_for_contains_text("#actions-message", "nothing was sent", timeout=TIMEOUT)

    assert read_weights(r53, zone) == {"us-east": 50, "us-west": 50}
    with context.session() as session:
        outcomes = session.scalars(select(ActionAudit.outcome).order_by(ActionAudit.seq)).all()
        # Sign-in attempts are audited too (docs/security.md); the action's rows follow.
        assert [o for o in outcomes if o != "signed-in"] == [
            "refused",
            "planned",
            "dry-run",
        ]

    dash_duo.find_element("#actions-live input").click()
    dash_duo.find_element("#actions-apply-btn").click()
    dash_duo.wait_for_contains_text("#actions-message", "INSYNC", timeout=TIMEOUT)

    assert read_weights(r53, zone) == {"us-east": 20, "us-west": 80}
    dash_duo.wait_for_contains_text("#actions-modal-body", "VERIFIED", timeout=TIMEOUT)
    driver.save_screenshot("/tmp/actions.png")
    assert dash_duo.get_logs() == []
