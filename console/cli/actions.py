"""`quarterdeck actions plan|approve|apply|verify|rollback|show`: the lifecycle from a shell.

The person acting is `--as USER`, signed in with that user's password from
`QUARTERDECK_PASSWORD` (local auth mode only); a bare flag never names an actor. Every command
takes `--json`. A refusal exits 1 after its audit row is committed.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from actions.base import Actor
from actions.registry import Response, plan_dict
from console.auth.users import actor_of, authenticate
from console.context import AppContext
from console.settings import Settings

NAME = "actions"
app = typer.Typer(no_args_is_help=True, help="Guarded actions: plan, approve, apply, rollback.")

EXIT_REFUSED = 1
EXIT_CONFIG = 2
EXIT_SIGN_IN = 4

AsUser = Annotated[str, typer.Option("--as", help="act as USER (password in QUARTERDECK_PASSWORD)")]
AsJson = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def fail(message: str, code: int, *, as_json: bool = False) -> typer.Exit:
    """Print ``message`` (as JSON with `--json`) and return the exit to raise."""
    if as_json:
        typer.echo(json.dumps({"ok": False, "message": message}))
    else:
        typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def cli_context(*, as_json: bool = False) -> AppContext:
    """Settings from the environment and the store they name."""
    try:
        settings = Settings()
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()]
        raise fail("invalid settings: " + "; ".join(lines), EXIT_CONFIG, as_json=as_json) from exc
    return AppContext.from_settings(settings)


def cli_actor(ctx: AppContext, user: str, *, as_json: bool) -> Actor:
    """Sign ``user`` in with `QUARTERDECK_PASSWORD`; refuse in header mode or on a bad password."""
    if ctx.settings.auth.mode != "local":
        raise fail(
            "the CLI signs in only in local auth mode (QUARTERDECK_AUTH__MODE=local)",
            EXIT_SIGN_IN,
            as_json=as_json,
        )
    password = os.environ.get("QUARTERDECK_PASSWORD")
    if not password:
        raise fail(f"set QUARTERDECK_PASSWORD to {user}'s password", EXIT_SIGN_IN, as_json=as_json)
    with ctx.session() as session:
        identity = authenticate(session, user, password)
    if identity is None:
        raise fail("unknown user or wrong password", EXIT_SIGN_IN, as_json=as_json)
    return actor_of(identity)


def _print_plan(plan: dict[str, Any]) -> None:
    typer.echo(
        f"plan {plan['plan_id']}  {plan['action']}  {plan['target']}  env={plan['environment']}  "
        f"status={plan['status']}  requested by {plan['requested_by']}"
    )
    typer.echo(f"  before: {json.dumps(plan['before'], sort_keys=True)}")
    typer.echo(f"  after:  {json.dumps(plan['after'], sort_keys=True)}")
    for rule in plan["rules"]:
        mark = "PASS" if rule["passed"] else "FAIL"
        typer.echo(f"  {mark} {rule['name']}: {rule['reason']}")
    impact = plan.get("preview", {}).get("impact")
    if impact:
        for example in impact["examples"]:
            typer.echo(
                f"    {example['decision_id']}: {example['was']} → {example['now']}  "
                f"{json.dumps(example['input'], sort_keys=True)}"
            )


def report(result: Response, *, as_json: bool) -> None:
    """Print a lifecycle answer; exit 1 when it was refused or blocked."""
    if as_json:
        typer.echo(json.dumps(result.as_dict(), sort_keys=True, default=str))
    else:
        if result.plan is not None:
            _print_plan(plan_dict(result.plan))
        typer.echo(("ok: " if result.ok else "refused: ") + result.message)
    if not result.ok:
        raise typer.Exit(EXIT_REFUSED)


def _service(ctx: AppContext) -> Any:
    from console.wiring import build_service

    return build_service(ctx.settings)


@app.command("plan")
def plan(
    action: Annotated[str, typer.Argument(help="route53.flip-weights or opa.pin-bundle")],
    env: Annotated[str, typer.Option("--env", help="environment")],
    user: AsUser,
    record: Annotated[str | None, typer.Option(help="DNS name (flip-weights)")] = None,
    weights: Annotated[str | None, typer.Option(help="REGION=WEIGHT,… (0–255)")] = None,
    record_type: Annotated[str | None, typer.Option("--type", help="record type")] = None,
    zone_id: Annotated[str | None, typer.Option(help="hosted zone id")] = None,
    bundle: Annotated[str | None, typer.Option(help="bundle name (pin-bundle)")] = None,
    revision: Annotated[str | None, typer.Option(help="revision to pin (pin-bundle)")] = None,
    provider: Annotated[str, typer.Option(help="registry or kubernetes (pin-bundle)")] = "registry",
    reason: Annotated[str, typer.Option(help="why")] = "",
    as_json: AsJson = False,
) -> None:
    """Read current state and show the diff and every rule; nothing changes."""
    ctx = cli_context(as_json=as_json)
    actor = cli_actor(ctx, user, as_json=as_json)
    params: dict[str, Any]
    if action == "route53.flip-weights":
        params = {"record": record, "weights": weights}
        params |= {k: v for k, v in (("type", record_type), ("zone_id", zone_id)) if v}
    else:
        params = {"bundle": bundle, "revision": revision, "provider": provider}
    with ctx.session() as session:
        result = _service(ctx).plan(session, actor, action, params, env, reason=reason)
    report(result, as_json=as_json)


@app.command("approve")
def approve(
    plan_id: Annotated[str, typer.Argument()], user: AsUser, as_json: AsJson = False
) -> None:
    """Approve someone else's plan (captain or admin)."""
    ctx = cli_context(as_json=as_json)
    actor = cli_actor(ctx, user, as_json=as_json)
    with ctx.session() as session:
        result = _service(ctx).approve(session, actor, plan_id)
    report(result, as_json=as_json)


@app.command("apply")
def apply(
    plan_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option(help="why (required)")],
    user: AsUser,
    live: Annotated[
        bool | None,
        typer.Option(
            "--live/--dry-run",
            help="really change / only rehearse (default: live where the environment allows it)",
        ),
    ] = None,
    override: Annotated[
        list[str] | None, typer.Option(help="break-glass: a rule to bypass (admin; repeatable)")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Apply a plan: for real where `QUARTERDECK_ACTIONS__LIVE_ENVIRONMENTS` allows, else a
    rehearsal; `--dry-run` always rehearses, `--live` insists on a real change."""
    ctx = cli_context(as_json=as_json)
    actor = cli_actor(ctx, user, as_json=as_json)
    with ctx.session() as session:
        result = _service(ctx).apply(
            session, actor, plan_id, reason=reason, live=live, override=override or []
        )
    report(result, as_json=as_json)


@app.command("verify")
def verify(
    plan_id: Annotated[str, typer.Argument()], user: AsUser, as_json: AsJson = False
) -> None:
    """Check whether an applied change is observed (bundle pins wait for OPA status)."""
    ctx = cli_context(as_json=as_json)
    actor = cli_actor(ctx, user, as_json=as_json)
    with ctx.session() as session:
        result = _service(ctx).verify(session, actor, plan_id)
    report(result, as_json=as_json)


@app.command("rollback")
def rollback(
    plan_id: Annotated[str, typer.Argument()],
    user: AsUser,
    reason: Annotated[str, typer.Option(help="why")] = "",
    as_json: AsJson = False,
) -> None:
    """Plan the return to a change's recorded "before" (then approve/apply it like any plan)."""
    ctx = cli_context(as_json=as_json)
    actor = cli_actor(ctx, user, as_json=as_json)
    with ctx.session() as session:
        result = _service(ctx).rollback(session, actor, plan_id, reason=reason)
    report(result, as_json=as_json)


@app.command("show")
def show(plan_id: Annotated[str, typer.Argument()], as_json: AsJson = False) -> None:
    """Show a stored plan."""
    ctx = cli_context(as_json=as_json)
    with ctx.session() as session:
        found = _service(ctx).get(session, plan_id)
        if found is None:
            raise fail(f"no plan {plan_id!r}", EXIT_REFUSED, as_json=as_json)
        data = plan_dict(found)
    if as_json:
        typer.echo(json.dumps(data, sort_keys=True, default=str))
    else:
        _print_plan(data)
