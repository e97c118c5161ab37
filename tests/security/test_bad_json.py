"""Bodies the console's own APIs parse (the action API, the Dash callback endpoint) are bounded:
nesting 100 000 deep answers 400 with a reason, never a 500 (receivers: `tests/console`)."""

from __future__ import annotations

from tests.security.conftest import ORIGIN, Console, sign_in

DEEP = b"[" * 100_000 + b"]" * 100_000


def test_deep_json_is_a_400_on_the_action_api_and_the_callback_endpoint(console: Console) -> None:
    client = console.client()
    sign_in(client, "captain-user")
    headers = {**ORIGIN, "Content-Type": "application/json"}

    plan = client.post("/api/actions/plan", data=DEEP, headers=headers)
    callback = client.post("/_dash-update-component", data=DEEP, headers=headers)
    broken = client.post("/api/actions/plan", data=b'{"action": ', headers=headers)

    assert plan.status_code == 400 and "nested deeper" in plan.json["error"]
    assert callback.status_code == 400 and "nested deeper" in callback.json["error"]
    assert broken.status_code == 400 and broken.json["error"].startswith("body:")
