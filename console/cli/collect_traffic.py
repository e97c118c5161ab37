"""`quarterdeck collect prometheus|route53|failover [--loop]`: the traffic collectors from the CLI.

Plain command functions, registered on the `collect` group by `console/commands/collect.py`
(one Typer group per name). Each pass records its run on Ingest health; with `--loop` a failed
pass is reported and the next one follows after the interval. `--loop` takes the store lease
`collect:<source>` (console/jobs/leader.py) unless `--no-lease`: run two replicas and one polls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated, Any

import typer

LoopOption = Annotated[bool, typer.Option("--loop", help="poll until interrupted")]
IntervalOption = Annotated[
    float | None, typer.Option(help="seconds between polls (default from settings)")
]
LeaseOption = Annotated[
    bool,
    typer.Option(
        "--lease/--no-lease",
        help="with --loop: poll only while holding the store lease collect:<source>, so "
        "replicas never poll the same source twice",
    ),
]
LeaseTtlOption = Annotated[
    float, typer.Option(help="seconds a silent leader keeps the lease (handover bound)")
]


def _ctx() -> Any:
    from console.cli.common import _context

    return _context()


def _leader_loop(
    name: str, once: Callable[[], str], *, interval_s: float, ttl_s: float, ctx: Any
) -> None:
    """Poll ``name`` on the interval only while this replica holds its lease (SIGTERM releases)."""
    import signal

    from console.jobs.leader import LeaderLoop

    leader = LeaderLoop(
        ctx.sessions,
        f"collect:{name}",
        interval_s=interval_s,
        ttl_s=ttl_s,
        on_state=lambda line: typer.echo(line),
    )

    def _stop(_signum: int, _frame: Any) -> None:
        leader.stop.set()

    signal.signal(signal.SIGTERM, _stop)

    def _pass() -> None:
        try:
            typer.echo(f"{name}: {once()}")
        except Exception as exc:
            typer.echo(f"{name}: failed: {exc}", err=True)

    try:
        leader.run(_pass)
    except KeyboardInterrupt:
        leader.release()


def _repeat(
    name: str,
    once: Callable[[], str],
    *,
    loop: bool,
    interval_s: float,
    lease: bool = False,
    lease_ttl_s: float = 30.0,
    ctx: Any = None,
) -> None:
    if loop and lease and ctx is not None:
        _leader_loop(name, once, interval_s=interval_s, ttl_s=lease_ttl_s, ctx=ctx)
        return
    stop = threading.Event()
    while True:
        try:
            typer.echo(f"{name}: {once()}")
        except Exception as exc:
            typer.echo(f"{name}: failed: {exc}", err=True)
            if not loop:
                raise typer.Exit(1) from exc
        if not loop or stop.wait(interval_s):
            return


def prometheus(
    loop: LoopOption = False,
    interval: IntervalOption = None,
    lease: LeaseOption = True,
    lease_ttl: LeaseTtlOption = 30.0,
) -> None:
    """Poll Prometheus `query_range` for traffic signals from the cursor to now."""
    from console.clients import http_session
    from console.jobs.traffic import run_prometheus

    ctx = _ctx()
    http = http_session()
    _repeat(
        "prometheus",
        lambda: str(run_prometheus(ctx, http).as_dict()),
        loop=loop,
        lease=lease,
        lease_ttl_s=lease_ttl,
        ctx=ctx,
        interval_s=interval or ctx.settings.prometheus.poll_interval_s,
    )


def route53(
    loop: LoopOption = False,
    interval: IntervalOption = None,
    lease: LeaseOption = True,
    lease_ttl: LeaseTtlOption = 30.0,
) -> None:
    """Snapshot the configured Route53 weighted records and their health checks."""
    from console.clients import aws_client
    from console.jobs.traffic import run_route53

    ctx = _ctx()
    client = aws_client(ctx.settings, "route53")
    _repeat(
        "route53",
        lambda: str(run_route53(ctx, client).as_dict()),
        loop=loop,
        lease=lease,
        lease_ttl_s=lease_ttl,
        ctx=ctx,
        interval_s=interval or ctx.settings.route53.poll_interval_s,
    )


def failover(
    loop: LoopOption = False,
    interval: IntervalOption = None,
    lease: LeaseOption = True,
    lease_ttl: LeaseTtlOption = 30.0,
) -> None:
    """Probe the PostgreSQL pair (lag, promotion, first write) and read RDS failover events."""
    from console.jobs.traffic import run_failover

    ctx = _ctx()
    _repeat(
        "failover",
        lambda: " | ".join(run_failover(ctx)),
        loop=loop,
        lease=lease,
        lease_ttl_s=lease_ttl,
        ctx=ctx,
        interval_s=interval or ctx.settings.failover.probe_interval_s,
    )
