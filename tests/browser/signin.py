"""Sign a browser in through the real `/sign-in` form (the demo signs nobody in)."""

from __future__ import annotations

from typing import Any

from console.auth.users import add_user
from console.context import AppContext


def add_and_sign_in(
    dash_duo: Any, ctx: AppContext, user: str, role: str, *, next_path: str = "/"
) -> None:
    """Create ``user`` with ``role`` in ``ctx``'s store and sign in as them, landing on next."""
    password = f"{user}-browser-password"
    with ctx.session() as session:
        add_user(session, user, password, [role])
    driver = dash_duo.driver
    driver.get(f"{dash_duo.server_url}/sign-in?next={next_path}")
    driver.find_element("id", "sign-in-user").send_keys(user)
    driver.find_element("id", "sign-in-password").send_keys(password)
    driver.find_element("id", "sign-in-submit").click()
