"""WSGI entry points for gunicorn: `console.wsgi:server` (everything) and `:receivers`.

* ``server`` — the console: pages, APIs and receivers (`gunicorn -w 4 console.wsgi:server`).
* ``receivers`` — only `/ingest/*` (and `/healthz`, `/readyz`, `/metrics`), behind
  :class:`Bounded`: at most ``QUARTERDECK_INGEST_MAX_INFLIGHT`` requests in flight per process;
  a request that cannot start within ``QUARTERDECK_INGEST_QUEUE_WAIT_S`` gets 503 with
  `Retry-After`, which OPA and Alertmanager retry, instead of a timeout (docs/scale-out.md).

Both are built on first access (module `__getattr__`), so importing this module for the
middleware builds no app. Settings come from the environment; the schema must already be
migrated (`quarterdeck db upgrade`), which `/readyz` reports until it is.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
RECEIVER_PREFIXES = ("/ingest/", "/healthz", "/readyz", "/metrics")


class Bounded:
    """WSGI middleware: a bounded queue in front of ``app`` (503 + Retry-After when full)."""

    def __init__(
        self, app: WsgiApp, *, max_inflight: int, queue_wait_s: float, retry_after_s: int = 1
    ) -> None:
        if max_inflight < 1:
            raise ValueError("max_inflight must be at least 1")
        self.app = app
        self.slots = threading.BoundedSemaphore(max_inflight)
        self.queue_wait_s = queue_wait_s
        self.retry_after = str(retry_after_s)
        self.refused = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not self.slots.acquire(timeout=self.queue_wait_s):
            self.refused += 1
            body = json.dumps({"error": "receiver saturated; retry after the delay"}).encode()
            start_response(
                "503 Service Unavailable",
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("Retry-After", self.retry_after),
                ],
            )
            return [body]
        try:
            # The receivers answer with small JSON bodies: materialise them inside the slot.
            result = self.app(environ, start_response)
            try:
                return list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        finally:
            self.slots.release()


class ReceiversOnly:
    """WSGI middleware: serve only the receiver paths; everything else is a JSON 404."""

    def __init__(self, app: WsgiApp, prefixes: tuple[str, ...] = RECEIVER_PREFIXES) -> None:
        self.app = app
        self.prefixes = prefixes

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "") or "/"
        if path.startswith(self.prefixes):
            return self.app(environ, start_response)
        body = json.dumps({"error": f"{path}: this process serves only the receivers"}).encode()
        start_response(
            "404 Not Found",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]


def receivers_app(
    flask_app: WsgiApp, *, max_inflight: int | None = None, queue_wait_s: float | None = None
) -> Bounded:
    """The receivers of ``flask_app`` alone, bounded (defaults from the environment)."""
    limit = max_inflight or int(os.environ.get("QUARTERDECK_INGEST_MAX_INFLIGHT", "8"))
    wait = (
        queue_wait_s
        if queue_wait_s is not None
        else float(os.environ.get("QUARTERDECK_INGEST_QUEUE_WAIT_S", "2"))
    )
    return Bounded(ReceiversOnly(flask_app), max_inflight=limit, queue_wait_s=wait)


_built: dict[str, Any] = {}


def _console() -> Any:
    if "app" not in _built:
        from console.app import create_app
        from console.context import AppContext
        from console.settings import Settings

        _built["app"] = create_app(AppContext.from_settings(Settings()))
    return _built["app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        return _console()
    if name == "server":
        return _console().server
    if name == "receivers":
        if "receivers" not in _built:
            _built["receivers"] = receivers_app(_console().server)
        return _built["receivers"]
    raise AttributeError(name)
