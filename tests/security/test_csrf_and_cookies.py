"""CSRF without exceptions: a cross-site POST riding ambient credentials (the session cookie, a
Basic-auth header the browser adds) is refused whatever `Authorization` it also carries; only a
bearer-token client with no cookie is exempt. The session cookie is `Secure` whenever the
trusted proxy says the browser is on HTTPS."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.security.conftest import PROXY_GROUPS, Console, build_console, callback_body, sign_in

EVIL = {"Origin": "https://evil.example"}
BASIC = "Basic " + base64.b64encode(b"sre-user:correct horse battery").decode()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    served = build_console(tmp_path, auth={"allow_anonymous_read": False})
    yield served
    served.ctx.engine.dispose()


def _signed_in(console: Console, user: str = "sre-user") -> FlaskClient:
    client = console.client()
    assert sign_in(client, user).status_code == 302
    return client


@pytest.mark.parametrize("authorization", ["Bearer anything", BASIC, "Token x"])
def test_a_cross_site_post_with_the_cookie_and_an_authorization_header_is_refused(
    console: Console, authorization: str
) -> None:
    client = _signed_in(console)
    drill = callback_body(
        console.app, "console.pages.failover.drill_action", "failover-drill-start"
    )

    dash = client.post(
        "/_dash-update-component",
        json=drill,
        headers={**EVIL, "Authorization": authorization},
    )
    api = client.post(
        "/api/actions/plan", json={}, headers={**EVIL, "Authorization": authorization}
    )
    no_origin = client.post("/api/actions/plan", json={}, headers={"Authorization": authorization})

    for answer in (dash, api, no_origin):
        assert answer.status_code == 403
        assert answer.json == {"error": "cross-origin request refused"}
    assert console.state()["failover_runs"] == 0


def test_behind_a_basic_auth_proxy_a_cross_site_post_is_refused(tmp_path: Path) -> None:
    console = build_console(tmp_path, users=False, auth={"mode": "header"})
    proxy = console.client()
    headers = {
        **EVIL,
        "Authorization": BASIC,  # the browser re-sends it on every request to the proxy
        "X-Forwarded-User": "sam@example.com",
        "X-Forwarded-Groups": PROXY_GROUPS["sre"],
    }
    drill = callback_body(
        console.app, "console.pages.failover.drill_action", "failover-drill-start"
    )

    answer = proxy.post("/_dash-update-component", json=drill, headers=headers)

    assert answer.status_code == 403 and console.state()["failover_runs"] == 0
    console.ctx.engine.dispose()


def test_a_bearer_client_without_a_cookie_is_not_asked_for_an_origin(console: Console) -> None:
    client = console.client()  # no cookie at all

    answer = client.post("/api/actions/plan", json={}, headers={"Authorization": "Bearer x"})

    # Past the Origin check; the console itself takes no bearer identity, so: sign in first.
    assert answer.status_code == 401 and answer.json["error"] != "cross-origin request refused"


def test_the_same_site_post_with_the_cookie_still_works(console: Console) -> None:
    client = _signed_in(console)
    drill = callback_body(
        console.app, "console.pages.failover.drill_action", "failover-drill-start"
    )

    answer = client.post(
        "/_dash-update-component", json=drill, headers={"Origin": "http://localhost"}
    )

    assert answer.status_code == 200 and "Started stage-drill-" in answer.get_data(as_text=True)


def test_https_at_the_trusted_proxy_makes_the_cookie_secure_and_sets_the_origin(
    console: Console,
) -> None:
    proxied = console.client()
    forwarded = {"X-Forwarded-Proto": "https", "Origin": "https://localhost"}

    behind_tls = sign_in(proxied, "sre-user", headers=forwarded)
    plain = sign_in(console.client(), "sre-user")
    outsider = console.client()
    outsider.environ_base["REMOTE_ADDR"] = "192.0.2.9"  # not the proxy: its header is ignored
    claimed = sign_in(outsider, "sre-user", headers=forwarded)

    assert behind_tls.status_code == 302 and "Secure" in behind_tls.headers["Set-Cookie"]
    assert plain.status_code == 302 and "Secure" not in plain.headers["Set-Cookie"]
    assert claimed.status_code == 403  # https://localhost is not this plain-HTTP origin
