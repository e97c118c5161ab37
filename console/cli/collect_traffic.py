"""`quarterdeck collect prometheus|route53|failover [--loop]`: the traffic collectors from the CLI.

Plain command functions, registered on the `collect` group by `console/commands/collect.py`
(one Typer group per name). Each pass records its run on Ingest health; with `--loop` a failed
pass is reported and the next one follows after the interval.
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


def _ctx() -> Any:
    from console.cli.common import _context

    return _context()


def _repeat(name: str, once: Callable[[], str], *, loop: bool, interval_s: float) -> None:
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


def prometheus(loop: LoopOption = False, interval: IntervalOption = None) -> None:
    """Poll Prometheus `query_range` for traffic signals from the cursor to now."""
    from console.clients import http_session
    from console.jobs.traffic import run_prometheus

    ctx = _ctx()
    http = http_session()
    _repeat(
        "prometheus",
        lambda: str(run_prometheus(ctx, http).as_dict()),
        loop=loop,
        interval_s=interval or ctx.settings.prometheus.poll_interval_s,
    )


def route53(loop: LoopOption = False, interval: IntervalOption = None) -> None:
    """Snapshot the configured Route53 weighted records and their health checks."""
    from console.clients import aws_client
    from console.jobs.traffic import run_route53

    ctx = _ctx()
    client = aws_client(ctx.settings, "route53")
    _repeat(
        "route53",
        lambda: str(run_route53(ctx, client).as_dict()),
        loop=loop,
        interval_s=interval or ctx.settings.route53.poll_interval_s,
    )


def failover(loop: LoopOption = False, interval: IntervalOption = None) -> None:
    """Probe the PostgreSQL pair (lag, promotion, first write) and read RDS failover events."""
    from console.jobs.traffic import run_failover

    ctx = _ctx()
    _repeat(
        "failover",
        lambda: " | ".join(run_failover(ctx)),
        loop=loop,
        interval_s=interval or ctx.settings.failover.probe_interval_s,
    )
