"""Sign-in resists guessing: 200 wrong passwords are throttled (429 + Retry-After after a few),
the right password works once the backoff has passed (on an injected clock: nothing sleeps),
unknown users get exactly the same answers, attempts are audited, and the state is shared
through Redis by every worker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from console.http.auth import throttle_of
from store.models import ActionAudit
from tests.conftest import peer_missing
from tests.security.conftest import ORIGIN, PASSWORD, Console, build_console, sign_in

REDIS_URL = "redis://127.0.0.1:6379/0"


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


def _with_clock(console: Console) -> Clock:
    clock = Clock()
    throttle_of(console.app.server).clock = clock
    return clock


@pytest.fixture
def local(tmp_path: Path) -> Iterator[tuple[Console, Clock]]:
    console = build_console(tmp_path, auth={"allow_anonymous_read": False})
    yield console, _with_clock(console)
    console.ctx.engine.dispose()


def _answer(response: Any) -> tuple[int, str | None, str]:
    return response.status_code, response.headers.get("Retry-After"), response.get_data(True)


def test_200_wrong_passwords_are_throttled_and_the_right_one_works_after_the_backoff(
    local: tuple[Console, Clock],
) -> None:
    console, clock = local
    client = console.client()

    answers = [sign_in(client, "sre-user", f"wrong guess {n}") for n in range(200)]
    statuses = [a.status_code for a in answers]
    during = sign_in(client, "sre-user")
    clock.now += int(answers[-1].headers["Retry-After"])
    after = sign_in(client, "sre-user")

    assert statuses[:5] == [401] * 5
    assert statuses[5:] == [429] * 195
    assert all(int(a.headers["Retry-After"]) >= 1 for a in answers[5:])
    assert during.status_code == 429
    assert after.status_code == 302 and "qd_session=" in after.headers["Set-Cookie"]


def test_the_backoff_doubles_with_each_failure_up_to_the_cap(local: tuple[Console, Clock]) -> None:
    console, clock = local
    client = console.client()
    for n in range(4):
        sign_in(client, "captain-user", f"wrong {n}")

    waits = []
    for n in range(14):
        failed = sign_in(client, "captain-user", f"still wrong {n}")
        assert failed.status_code == 401
        wait = int(sign_in(client, "captain-user", "any").headers["Retry-After"])
        waits.append(wait)
        clock.now += wait

    assert waits[:6] == [1, 2, 4, 8, 16, 32]
    assert max(waits) == 900 and waits[-1] == 900


def test_an_unknown_user_gets_exactly_the_answers_a_known_user_gets(tmp_path: Path) -> None:
    sequences = []
    for name in ("sre-user", "nobody-at-all"):
        console = build_console(tmp_path / name, auth={"allow_anonymous_read": False})
        clock = _with_clock(console)
        client = console.client()
        answers = [_answer(sign_in(client, name, f"wrong {n}")) for n in range(8)]
        clock.now += 1
        answers.append(_answer(sign_in(client, name, "wrong again")))
        sequences.append(answers)
        console.ctx.engine.dispose()

    assert sequences[0] == sequences[1]
    assert [s for s, _, _ in sequences[0]] == [401] * 5 + [429] * 3 + [401]


def test_guesses_across_many_accounts_are_throttled_per_client_address(
    local: tuple[Console, Clock],
) -> None:
    console, _ = local
    proxy = console.client()  # the auth proxy on 127.0.0.1 (trusted) forwards two clients

    def attempt(user: str, client_ip: str) -> int:
        headers = {**ORIGIN, "X-Forwarded-For": f"{client_ip}, 127.0.0.1"}
        return int(sign_in(proxy, user, "wrong", headers=headers).status_code)

    sprayed = [attempt(f"user-{n}", "203.0.113.7") for n in range(25)]
    other_client = attempt("user-0", "198.51.100.9")
    right_elsewhere = sign_in(
        proxy, "sre-user", PASSWORD, headers={**ORIGIN, "X-Forwarded-For": "198.51.100.9"}
    )

    assert sprayed[:20] == [401] * 20 and sprayed[20:] == [429] * 5
    assert other_client == 401 and right_elsewhere.status_code == 302


def test_an_untrusted_peer_cannot_pick_its_address_with_x_forwarded_for(
    local: tuple[Console, Clock],
) -> None:
    console, _ = local
    outsider = console.client()
    outsider.environ_base["REMOTE_ADDR"] = "192.0.2.50"

    codes = [
        sign_in(
            outsider, f"user-{n}", "wrong", headers={**ORIGIN, "X-Forwarded-For": f"10.0.0.{n}"}
        ).status_code
        for n in range(21)
    ]

    assert codes[:20] == [401] * 20 and codes[20] == 429


def test_attempts_are_audited_without_the_names_of_unknown_users(
    local: tuple[Console, Clock],
) -> None:
    console, _ = local
    client = console.client()
    for n in range(6):
        sign_in(client, "sre-user", f"wrong {n}")
    sign_in(client, "hunter2-typed-in-the-user-field", "x")
    sign_in(client, "viewer-user")

    with console.ctx.session() as session:
        rows = session.scalars(
            select(ActionAudit).where(ActionAudit.action == "sign-in").order_by(ActionAudit.seq)
        ).all()
        seen = [(r.actor, r.outcome, r.target) for r in rows]
        text = " ".join(f"{r.actor} {r.detail}" for r in rows)

    assert seen[:5] == [("sre-user", "refused", "127.0.0.1")] * 5
    assert seen[5] == ("sre-user", "throttled", "127.0.0.1")
    assert seen[6][0].startswith("unknown-user:") and seen[6][1] == "refused"
    assert seen[7] == ("viewer-user", "signed-in", "127.0.0.1")
    assert "hunter2" not in text


def test_workers_share_the_throttle_through_redis(tmp_path: Path) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        peer_missing(f"Redis not reachable at {REDIS_URL}: {exc}")
    prefix = f"qd-test-signin-{uuid.uuid4().hex[:8]}:"
    auth = {"allow_anonymous_read": False, "signin_redis_prefix": prefix}
    one = build_console(tmp_path / "one", auth=auth, redis_url=REDIS_URL)
    two = build_console(tmp_path / "two", auth=auth, redis_url=REDIS_URL)
    clock = Clock()
    throttle_of(one.app.server).clock = clock
    throttle_of(two.app.server).clock = clock
    try:
        workers = [one.client(), two.client()]
        codes = [sign_in(workers[n % 2], "sre-user", f"wrong {n}").status_code for n in range(8)]
        clock.now += 1
        right = sign_in(workers[1], "sre-user")
        stored = sorted(k.decode() for k in client.scan_iter(f"{prefix}*"))
    finally:
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        one.ctx.engine.dispose()
        two.ctx.engine.dispose()

    assert codes == [401] * 5 + [429] * 3
    assert right.status_code == 302
    assert stored == [f"{prefix}addr:127.0.0.1"]  # the account's count cleared on success
