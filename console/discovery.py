"""Find the console's extension modules so each capability adds files, not edits to shared ones.

- `console/http/<name>.py`: `make_blueprint(ctx) -> flask.Blueprint` (receivers and APIs).
- `console/commands/<name>.py`: `NAME: str` and `app: typer.Typer` (a `quarterdeck NAME …` group).
- `console/demo_parts/<name>.py`: `feed(session) -> dict[str, IngestResult]`, run inside the demo
  seed's transaction after the core sprint, in module-name order.
- `console/services/<name>.py`: `start(ctx) -> Callable[[], None] | None` (a background service
  for `quarterdeck serve`; returns its stop function, or None when not configured).
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def modules(package: str) -> list[ModuleType]:
    """Import and return every module of ``package`` (e.g. `console.http`) sorted by name."""
    pkg = importlib.import_module(package)
    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))
    return [importlib.import_module(f"{package}.{name}") for name in names]
