"""`quarterdeck users add|list`: local users for the sign-in page and the CLI's `--as`."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer
from sqlalchemy import select

from console.auth.identity import ROLES
from console.auth.users import AuthError, add_user
from console.cli.actions import EXIT_CONFIG, cli_context, fail
from store.models.actions import User

NAME = "users"
app = typer.Typer(no_args_is_help=True, help="Local users (QUARTERDECK_AUTH__MODE=local).")


@app.command("add")
def add(
    username: Annotated[str, typer.Argument()],
    role: Annotated[list[str], typer.Option(help=f"one of {', '.join(ROLES)} (repeatable)")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Add a user; the password comes from QUARTERDECK_PASSWORD or a hidden prompt."""
    password = os.environ.get("QUARTERDECK_PASSWORD") or typer.prompt(
        "Password", hide_input=True, confirmation_prompt=True
    )
    ctx = cli_context(as_json=as_json)
    try:
        with ctx.session() as session:
            user = add_user(session, username, password, role)
            roles = list(user.roles)
    except AuthError as exc:
        raise fail(str(exc), EXIT_CONFIG, as_json=as_json) from exc
    if as_json:
        typer.echo(json.dumps({"ok": True, "username": username, "roles": roles}))
    else:
        typer.echo(f"added {username} ({', '.join(roles)})")


@app.command("list")
def list_users(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List local users and their roles (never their hashes)."""
    ctx = cli_context(as_json=as_json)
    with ctx.session() as session:
        rows: list[dict[str, Any]] = [
            {"username": u.username, "roles": list(u.roles), "disabled": u.disabled}
            for u in session.scalars(select(User).order_by(User.username))
        ]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        flag = "  (disabled)" if row["disabled"] else ""
        typer.echo(f"{row['username']:20} {', '.join(row['roles'])}{flag}")
