"""The composition root's shared objects: settings, engine, session factory, sprint files."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from console.settings import Settings
from store.db import make_engine, session_factory, session_scope
from store.goals import Sprint, SprintConfigError, list_sprints, load_sprint


@dataclass
class AppContext:
    """What every page callback, API handler and CLI command works with."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    _sprints: dict[str, tuple[float, Sprint]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> AppContext:
        engine = make_engine(settings.resolved_database_url)
        return cls(settings=settings, engine=engine, sessions=session_factory(engine))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work (commit on success, roll back on error)."""
        with session_scope(self.sessions) as session:
            yield session

    def sprint_files(self) -> list[Path]:
        return list_sprints(self.settings.sprints_dir)

    def sprint_slugs(self) -> list[str]:
        return [p.stem for p in self.sprint_files()]

    def sprint(self, slug: str | None = None) -> Sprint:
        """Load a sprint by file stem (re-read when the file changes).

        Raises :class:`SprintConfigError` (with `file: goal id: field: problem` lines) for an
        invalid or missing file; the console shows those lines instead of a stack trace.
        """
        slug = slug or self.settings.default_sprint
        path = self.settings.sprints_dir / f"{slug}.yaml"
        if not path.is_file():
            raise SprintConfigError([f"{path}: sprint: (whole): no such sprint file"])
        mtime = path.stat().st_mtime
        cached = self._sprints.get(slug)
        if cached and cached[0] == mtime:
            return cached[1]
        sprint = load_sprint(path)
        self._sprints[slug] = (mtime, sprint)
        return sprint
