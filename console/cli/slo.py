"""`quarterdeck slo check|rules|alertmanager-config`, and `quarterdeck collect slo`.

- `check` validates `data/slos/*.yaml` and `data/oncall/*.yaml` (`file: field: problem`, exit 2).
- `rules [--out DIR]` writes the Prometheus rule file (`quarterdeck-slo.rules.yml`): recording
  rules for the error ratio and traffic over every window, FastBurn (page: 1h/5m × 14.4,
  6h/30m × 6) and SlowBurn (ticket: 3d/6h × 1), from the same definitions the console's burn
  chart and gate evaluate (`store.slo`). Without `--out` it prints the file.
- `alertmanager-config` prints a route tree + receivers: every alert to Quarterdeck's
  `/ingest/alertmanager`, pages to each service's level-1 escalation receiver.
- `collect slo [--loop]` (mounted on the `collect` group) runs the SLI collector once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from console.cli.common import EXIT_CONFIG, _fail, _settings

NAME = "slo"
app = typer.Typer(no_args_is_help=True, help="SLOs: validation, Prometheus rules, Alertmanager.")
RULES_FILE = "quarterdeck-slo.rules.yml"

ConsoleUrl = Annotated[
    str | None,
    typer.Option(
        help="console URL for runbook links (default QUARTERDECK_PROMETHEUS__CONSOLE_URL)"
    ),
]


def _definitions() -> tuple[Any, list[Any], list[Any]]:
    from console.settings.egress import egress_config
    from store.slo import SloConfigError, load_oncall, load_slos

    settings = _settings()
    slos_dir = egress_config(settings).slos_dir
    problems: list[str] = []
    slos: list[Any] = []
    oncall: list[Any] = []
    try:
        slos = load_slos(slos_dir)
    except SloConfigError as exc:
        problems.extend(exc.problems)
    try:
        oncall = load_oncall(settings.data_dir / "oncall", slos=slos)
    except SloConfigError as exc:
        problems.extend(exc.problems)
    for line in problems:
        typer.echo(line, err=True)
    if problems:
        raise typer.Exit(EXIT_CONFIG)
    if not slos:
        raise _fail(f"no SLO files in {slos_dir}", EXIT_CONFIG)
    return settings, slos, oncall


@app.command("check")
def check() -> None:
    """Validate SLO and on-call files; print each problem as `file: field: problem`."""
    _, slos, oncall = _definitions()
    typer.echo(f"ok: {len(slos)} SLO(s), {len(oncall)} escalation map(s)")


@app.command("rules")
def rules(
    out: Annotated[Path | None, typer.Option(help=f"write DIR/{RULES_FILE}")] = None,
    console_url: ConsoleUrl = None,
) -> None:
    """Write (or print) the generated Prometheus recording and alerting rules."""
    from store.slo import dump_yaml, rule_groups

    settings, slos, _ = _definitions()
    text = dump_yaml(rule_groups(slos, console_url=console_url or settings.prometheus.console_url))
    if out is None:
        typer.echo(text, nl=False)
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / RULES_FILE).write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out / RULES_FILE} ({len(slos)} SLO group(s)); check with promtool")


@app.command("alertmanager-config")
def alertmanager_config(
    console_url: ConsoleUrl = None,
    credentials_file: Annotated[
        str | None, typer.Option(help="file Alertmanager reads Quarterdeck's bearer token from")
    ] = None,
) -> None:
    """Print the Alertmanager route and receivers for the escalation maps and Quarterdeck."""
    from store.slo import CREDENTIALS_FILE, alertmanager_config, dump_yaml

    settings, _, oncall = _definitions()
    config = alertmanager_config(
        oncall,
        console_url=console_url or settings.prometheus.console_url,
        credentials_file=credentials_file or CREDENTIALS_FILE,
    )
    typer.echo(dump_yaml(config), nl=False)


def collect_slo(
    loop: Annotated[bool, typer.Option("--loop", help="poll until interrupted")] = False,
    interval: Annotated[
        float | None, typer.Option(help="seconds between polls (default from settings)")
    ] = None,
) -> None:
    """Evaluate every SLO's good/total queries against Prometheus and store the samples."""
    import threading

    from console.cli.common import _context
    from console.clients import http_session
    from console.jobs.traffic import run_slis

    ctx = _context()
    http = http_session()
    stop = threading.Event()
    while True:
        try:
            report = run_slis(ctx, http)
        except ValueError as exc:
            raise _fail(str(exc), EXIT_CONFIG) from exc
        for line in report.lines():
            typer.echo(f"slo: {line}", err="failed:" in line)
        if not loop:
            if report.errors:
                raise typer.Exit(1)
            return
        if stop.wait(interval or ctx.settings.prometheus.slo_interval_s):
            return


def mount_collect() -> None:
    """Add `quarterdeck collect slo` to the collect group (called when this group is mounted)."""
    from console.cli import collect

    names = {c.name for c in collect.app.registered_commands}
    if "slo" not in names:
        collect.app.command("slo")(collect_slo)


mount_collect()
