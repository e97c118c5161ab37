"""Leader-only loops: two replicas of one collector never poll the same source at once.

`quarterdeck collect <source> --loop` runs its pass inside :class:`LeaderLoop`. Each replica
tries the store lease `collect:<source>` (store/leases.py); the winner polls when the interval
since the last pass (by any replica) has passed and renews the lease while it works, the loser
retries every third of the TTL. A leader that stops cleanly releases its lease (the follower
takes over at its next try); one that crashes stops renewing and loses the lease after its TTL.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from store import leases
from store.ingest import utcnow

log = logging.getLogger(__name__)


def holder_id() -> str:
    """This process's identity in a lease: host, pid and a random suffix (never reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaderLoop:
    """Run ``once`` every ``interval_s`` seconds, but only while holding lease ``name``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        name: str,
        *,
        interval_s: float,
        ttl_s: float,
        holder: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        on_state: Callable[[str], None] | None = None,
    ) -> None:
        if ttl_s <= 0 or interval_s <= 0:
            raise ValueError("interval and lease TTL must be positive")
        self.sessions = sessions
        self.name = name
        self.interval = interval_s
        self.ttl = ttl_s
        self.holder = holder or holder_id()
        self.clock = clock
        self.stop = threading.Event()
        self._on_state = on_state or (lambda line: log.info("%s", line))
        self._leading: bool | None = None
        self.passes = 0

    def _acquire(self) -> leases.Held | None:
        with self.sessions() as session, session.begin():
            return leases.acquire(session, self.name, self.holder, ttl_s=self.ttl, now=self.clock())

    def _state(self, leading: bool) -> None:
        if leading != self._leading:
            self._leading = leading
            verb = "leads" if leading else "follows"
            self._on_state(f"{self.name}: {self.holder} {verb}")

    def _renew_while(self, done: threading.Event) -> None:
        while not done.wait(self.ttl / 3):
            try:
                if self._acquire() is None:
                    log.error("%s: lease lost during a pass", self.name)
                    return
            except Exception as exc:  # the pass goes on; the next renewal retries
                log.warning("%s: lease renewal failed: %s", self.name, exc)

    def tick(self, once: Callable[[], object]) -> float:
        """One step: poll if leader and due; return how long to wait before the next step."""
        try:
            held = self._acquire()
        except Exception as exc:  # store down: nobody can prove leadership, so nobody polls
            log.warning("%s: lease unavailable: %s", self.name, exc)
            self._state(False)
            return self.ttl / 3
        if held is None:
            self._state(False)
            return self.ttl / 3
        self._state(True)
        now = self.clock()
        due = (
            now if held.last_run_at is None else held.last_run_at + timedelta(seconds=self.interval)
        )
        if now < due:
            return min((due - now).total_seconds(), self.ttl / 3)
        with self.sessions() as session, session.begin():
            if not leases.mark_run(session, self.name, self.holder, at=now):
                return self.ttl / 3
        done = threading.Event()
        renewer = threading.Thread(target=self._renew_while, args=(done,), daemon=True)
        renewer.start()
        try:
            once()
        finally:
            done.set()
            renewer.join(timeout=5)
            self.passes += 1
        return min(self.interval, self.ttl / 3)

    def run(self, once: Callable[[], object]) -> None:
        """Loop until :attr:`stop` is set; a failing pass is logged and the loop goes on."""
        try:
            while not self.stop.is_set():
                try:
                    pause = self.tick(once)
                except Exception as exc:
                    log.warning("%s: pass failed: %s", self.name, exc)
                    pause = min(self.interval, self.ttl / 3)
                self.stop.wait(pause)
        finally:
            self.release()

    def release(self) -> None:
        """Give the lease up (best effort) so a follower takes over without waiting the TTL."""
        try:
            with self.sessions() as session, session.begin():
                leases.release(session, self.name, self.holder, now=self.clock())
        except Exception as exc:
            log.warning("%s: could not release the lease: %s", self.name, exc)
