"""The issue-15 walk in Chromium against moto's Route 53: sam previews a prod flip (bad weight
refused first), the record picked with its weights and health; Apply is refused until cara, told
by her header and inbox, approves; sam applies (INSYNC, read back, VERIFIED). Then the demo
control makes us-west unhealthy and a flip towards it is blocked by `target-region-healthy`."""

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
from demo.route53 import DEMO_RECORD, seed_records
from store.migrate import upgrade
from store.models import ActionAudit
from tests.conftest import free_port, make_settings
from tests.peers_actions import moto_server, reset_moto, route53_client

pytestmark = pytest.mark.browser

TIMEOUT = 30
PASSWORDS = {"sam": "sam-password-123", "cara": "cara-password-123"}


def weights(client: Any, zone: str) -> dict[str, int]:
    sets = client.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    return {rs["SetIdentifier"]: rs["Weight"] for rs in sets if rs["Name"] == DEMO_RECORD}


@pytest.fixture
def flip_ctx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[AppContext, Any, str]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto_server() as url:
        reset_moto(url)  # moto's backend is per process: other tests' zones would linger
        client = route53_client(url)
        zone = seed_records(client)  # the demo's records: api (health checks), www (alias)
        settings = make_settings(
            tmp_path,
            auth={"allow_anonymous_read": False},
            aws={"endpoint_url": url},
            actions={"live_environments": ["stage", "prod"]},
        )
        context = AppContext.from_settings(settings)
        upgrade(context.engine)
        with context.session() as session:
            add_user(session, "sam", PASSWORDS["sam"], ["sre"])
            add_user(session, "cara", PASSWORDS["cara"], ["captain"])
        yield context, client, zone
        context.engine.dispose()


def sign_in(dash_duo: Any, base: str, user: str) -> None:
    driver = dash_duo.driver
    driver.delete_all_cookies()
    driver.get(f"{base}/sign-in?next=/actions")
    driver.find_element("id", "sign-in-user").send_keys(user)
    driver.find_element("id", "sign-in-password").send_keys(PASSWORDS[user])
    driver.find_element("id", "sign-in-submit").click()
    dash_duo.wait_for_contains_text("#actions-who", f"Signed in as {user}", timeout=TIMEOUT)


def test_preview_approve_from_the_inbox_apply_then_an_unhealthy_region_blocks(
    browser_available: None, dash_duo: Any, flip_ctx: tuple[AppContext, Any, str]
) -> None:
    context, r53, zone = flip_ctx
    dash_duo.start_server(create_app(context), navigate=False, port=free_port())
    base = dash_duo.server.url.rstrip("/")
    driver = dash_duo.driver
    page = f"{base}/actions?env=prod&record={quote(DEMO_RECORD)}"

    sign_in(dash_duo, base, "sam")
    driver.get(page)
    dash_duo.wait_for_contains_text("#actions-record-status", "HEALTHY", timeout=TIMEOUT)
    assert "us-west" in dash_duo.find_element("#actions-record-status").text
    field = dash_duo.find_element("#actions-weights")
    dash_duo.wait_for_element_by_css_selector("#actions-weights[value='us-east=50,us-west=50']")
    dash_duo.clear_input(field)
    field.send_keys("us-east=300")
    dash_duo.find_element("#actions-plan-btn").click()
    dash_duo.wait_for_contains_text("#actions-form-message", "outside 0–255", timeout=TIMEOUT)
    dash_duo.clear_input(field)
    field.send_keys("us-east=20,us-west=80")
    dash_duo.find_element("#actions-plan-btn").click()
    dash_duo.wait_for_contains_text("#actions-modal-body", "Every rule passes.", timeout=TIMEOUT)
    dash_duo.wait_for_contains_text("#actions-steps", "waiting for a captain", timeout=TIMEOUT)
    assert dash_duo.find_element("#actions-approve-btn").get_attribute("disabled")
    dash_duo.find_element("#actions-reason").send_keys("shift load west")
    dash_duo.find_element("#actions-apply-btn").click()
    dash_duo.wait_for_contains_text("#actions-message", "two-person-approval", timeout=TIMEOUT)
    assert weights(r53, zone) == {"us-east": 50, "us-west": 50}

    sign_in(dash_duo, base, "cara")
    dash_duo.wait_for_contains_text("#shell-inbox-count", "Approvals: 1", timeout=TIMEOUT)
    dash_duo.wait_for_contains_text("#actions-inbox", "sam", timeout=TIMEOUT)
    assert "us-east 50→20 · us-west 50→80" in dash_duo.find_element("#actions-inbox").text
    dash_duo.find_element("#actions-inbox button").click()
    dash_duo.wait_for_contains_text("#actions-modal-body", "requested by sam", timeout=TIMEOUT)
    dash_duo.find_element("#actions-approve-btn").click()
    dash_duo.wait_for_contains_text("#actions-message", "approved until", timeout=TIMEOUT)
    dash_duo.wait_for_contains_text("#actions-inbox", "Nothing waits", timeout=TIMEOUT)

    sign_in(dash_duo, base, "sam")
    dash_duo.find_element(".qd-action-plans button").click()
    dash_duo.wait_for_contains_text("#actions-steps", "approved by cara", timeout=TIMEOUT)
    dash_duo.find_element("#actions-reason").send_keys("shift load west")
    dash_duo.find_element("#actions-apply-btn").click()
    dash_duo.wait_for_contains_text("#actions-message", "INSYNC", timeout=TIMEOUT)
    dash_duo.wait_for_contains_text("#actions-modal-body", "VERIFIED", timeout=TIMEOUT)
    assert weights(r53, zone) == {"us-east": 20, "us-west": 80}
    assert not dash_duo.find_element("#actions-rollback-btn").get_attribute("disabled")
    assert dash_duo.find_element("#actions-apply-btn").get_attribute("disabled")
    driver.save_screenshot("/tmp/actions.png")
    dash_duo.find_element("#actions-close-btn").click()

    unhealthy = "//button[normalize-space()='Make us-west unhealthy']"
    driver.find_element("xpath", unhealthy).click()
    dash_duo.wait_for_contains_text("#actions-demo-message", "us-west is now unhealthy")
    driver.get(page)
    dash_duo.wait_for_contains_text("#actions-record-status", "UNHEALTHY", timeout=TIMEOUT)
    field = dash_duo.find_element("#actions-weights")
    dash_duo.clear_input(field)
    field.send_keys("us-east=0,us-west=100")
    dash_duo.find_element("#actions-plan-btn").click()
    dash_duo.wait_for_contains_text(
        "#actions-modal-body", "Blocked by target-region-healthy", timeout=TIMEOUT
    )
    assert "inverted" in dash_duo.find_element("#actions-modal-body").text
    assert weights(r53, zone) == {"us-east": 20, "us-west": 80}

    with context.session() as session:
        outcomes = session.scalars(select(ActionAudit.outcome).order_by(ActionAudit.seq)).all()
    assert [o for o in outcomes if o != "signed-in"] == [
        "refused",
        "planned",
        "refused",
        "approved",
        "applied",
        "blocked",
    ]
    assert dash_duo.get_logs() == []
