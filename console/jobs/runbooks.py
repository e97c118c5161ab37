"""The runbook job: advances every running runbook run in the background (issue 19).

`quarterdeck serve` starts it (`console.wiring.start_jobs`). State lives in `runbook_runs`, so a
page reload or a console restart picks a run up at its current step. Two console replicas never
advance runs at once: each pass holds the store lease `runbooks` (store/leases.py).

Also here, the composition of the runbook pieces: the promotion providers from settings
(`runbook_actions`, used by `console.wiring.build_service`), the failover timeline over
`collectors.failover` (:class:`FailoverTimeline`) and the runner the page and the CLI use.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from actions.base import SYSTEM_CLOCK, Clock, GuardedAction
from actions.promote import (
    DatabaseProvider,
    PostgresDatabase,
    PromoteDatabase,
    RdsDatabase,
    SimulatedDatabase,
)
from actions.registry import ActionService
from actions.runbooks import Runbook, RunbookRunner, RunRunbook, load_runbooks
from collectors import failover
from console.context import AppContext
from console.settings import Settings
from console.settings.actions import DatabaseTargetSettings
from store import leases
from store.db import session_scope

log = logging.getLogger(__name__)

LEASE = "runbooks"
SOURCE = "runbook"
_SIMULATED: dict[str, SimulatedDatabase] = {}  # the demo's databases live as long as the process


def runbook_dir(settings: Settings) -> Path:
    cfg = settings.actions.runbooks
    return Path(cfg.dir) if cfg.dir else settings.data_dir / "runbooks"


def runbooks(settings: Settings) -> tuple[dict[str, Runbook], list[str]]:
    """The valid runbooks and every validation problem of the others."""
    return load_runbooks(runbook_dir(settings))


def _provider(
    settings: Settings, name: str, cfg: DatabaseTargetSettings, clock: Clock
) -> Callable[[], DatabaseProvider]:
    from console.clients import aws_client, pg_connector

    timeout = settings.actions.runbooks.connect_timeout_s

    def dsn(value: Any) -> Any:
        return pg_connector(value.get_secret_value(), timeout_s=timeout) if value else None

    def build() -> DatabaseProvider:
        if cfg.provider == "simulated":
            return _SIMULATED.setdefault(name, SimulatedDatabase(cfg.simulated_lag_s, clock=clock))
        if cfg.provider == "postgresql":
            if cfg.standby_dsn is None:
                raise ValueError(f"database {name}: standby_dsn is not set")
            return PostgresDatabase(
                dsn(cfg.standby_dsn), dsn(cfg.primary_dsn), replica_name=cfg.replica_name
            )
        return RdsDatabase(
            aws_client(settings, "rds"),
            instance=cfg.instance,
            cluster=cfg.cluster if cfg.provider == "aurora" else None,
            target=cfg.target,
            cloudwatch=aws_client(settings, "cloudwatch"),
            writer=dsn(cfg.writer_dsn),
            clock=clock,
        )

    return build


def runbook_actions(settings: Settings, *, clock: Clock = SYSTEM_CLOCK) -> list[GuardedAction]:
    """`db.promote` over the configured databases and `runbook.run` over the runbook folder.

    In demo mode every database a runbook names and settings do not configure is simulated.
    """
    cfg = settings.actions.runbooks
    targets = dict(cfg.databases)
    if settings.demo_mode:
        for book in runbooks(settings)[0].values():
            names = {book.database} | {str(s.params.get("database") or "") for s in book.steps}
            for db in names - {""}:
                targets.setdefault(db, DatabaseTargetSettings(provider="simulated"))
    databases = {n: _provider(settings, n, t, clock) for n, t in targets.items()}
    return [
        PromoteDatabase(databases, promote_timeout_s=cfg.promote_timeout_s, clock=clock),
        RunRunbook(lambda: runbooks(settings)[0], clock=clock),
    ]


class FailoverTimeline:
    """The runbook's timeline written through collectors.failover (the Failover page reads it)."""

    def open(
        self,
        session: Session,
        *,
        environment: str,
        at: datetime,
        kind: str,
        notes: str,
        suffix: str,
    ) -> str:
        return failover.open_run(
            session,
            environment=environment,
            at=at,
            kind=kind,
            source=SOURCE,
            notes=notes,
            suffix=suffix,
        )

    def phase(
        self, session: Session, run_key: str, phase: str | None, at: datetime, message: str
    ) -> None:
        failover.mark_phase(
            session, run_key=run_key, phase=phase, at=at, source=SOURCE, message=message
        )

    def lag(
        self, session: Session, *, environment: str, replica: str, at: datetime, lag_s: float
    ) -> None:
        failover.load_lag_samples(
            session, [{"environment": environment, "replica": replica, "ts": at, "lag_s": lag_s}]
        )

    def close(
        self, session: Session, run_key: str, at: datetime, message: str, *, complete: bool
    ) -> None:
        if complete:
            self.phase(session, run_key, "complete", at, message)
        else:
            failover.end_run(session, run_key=run_key, at=at, source=SOURCE, message=message)


def runner(settings: Settings, service: ActionService | None = None) -> RunbookRunner:
    """The runner over the console's action service and the failover timeline."""
    from console.wiring import build_service

    return RunbookRunner(service or build_service(settings), FailoverTimeline())


def run_pass(ctx: AppContext, run: RunbookRunner | None = None, *, holder: str) -> list[str]:
    """One job pass under the lease: advance every running run; returns the run ids touched."""
    engine = run or runner(ctx.settings)
    ttl = max(30.0, 10 * ctx.settings.actions.runbooks.tick_s)
    with session_scope(ctx.sessions) as session:
        held = leases.acquire(session, LEASE, holder, ttl_s=ttl, now=engine.clock())
    if held is None:
        return []
    with session_scope(ctx.sessions) as session:
        return engine.tick(session)


class RunbookJob:
    """Calls :func:`run_pass` every `tick_s` seconds on a daemon thread until stopped."""

    def __init__(self, ctx: AppContext) -> None:
        from console.jobs.leader import holder_id

        self.ctx = ctx
        self.holder = holder_id()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="runbooks", daemon=True)

    def start(self) -> RunbookJob:
        self._thread.start()
        return self

    def _run(self) -> None:
        interval = self.ctx.settings.actions.runbooks.tick_s
        while not self._stop.is_set():
            try:
                run_pass(self.ctx, holder=self.holder)
            except Exception:
                log.exception("runbook pass failed")
            self._stop.wait(interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        try:  # shutting down must not fail: an unreleased lease simply expires
            with session_scope(self.ctx.sessions) as session:
                leases.release(session, LEASE, self.holder, now=SYSTEM_CLOCK())
        except Exception as exc:
            log.warning("runbook job: releasing the %s lease failed: %s", LEASE, exc)


def start(ctx: AppContext) -> Callable[[], None] | None:
    """Start the runbook job (always: a run may be started from the page or the CLI)."""
    job = RunbookJob(ctx).start()
    return job.stop
