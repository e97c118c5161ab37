"""Runbook runs: one row per execution of a runbook (practice or recovery), its steps as JSON.

The background job advances a run step by step; everything it needs to resume after a restart
or a page reload is on this row (`status`, `current_step`, each step's state). `control` is
what a person asked for (pause, resume, abort) and the job obeys at its next step boundary.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, BigId

RUNBOOK_STATUSES = (
    "running",
    "paused",
    "awaiting-approval",
    "blocked",
    "failed",
    "aborted",
    "completed",
)
"""`running` is picked up by the job; the others wait for a person or are final."""
RUNBOOK_FINAL = ("failed", "aborted", "completed")


class RunbookRun(Base):
    """One run of a runbook: mode, who asked, where it is, each step's state and timings."""

    __tablename__ = "runbook_runs"
    __table_args__ = (
        UniqueConstraint("run_id"),
        Index("ix_runbook_runs_runbook_started", "runbook", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[str] = mapped_column(String(40))
    runbook: Mapped[str] = mapped_column(String(100))
    mode: Mapped[str] = mapped_column(String(20))  # practice | recovery
    environment: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(30))
    requested_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text, default="")
    plan_id: Mapped[str | None] = mapped_column(String(40))  # the run's own guarded-action plan
    failover_run_key: Mapped[str | None] = mapped_column(String(200))
    current_step: Mapped[int] = mapped_column(Integer, default=0)
    steps: Mapped[list[Any]] = mapped_column(default=list)
    rollback: Mapped[list[Any]] = mapped_column(default=list)
    overrides: Mapped[dict[str, Any]] = mapped_column(default=dict)
    control: Mapped[str | None] = mapped_column(String(20))
    message: Mapped[str] = mapped_column(Text, default="")
    rto_s: Mapped[float | None] = mapped_column(Float)
    rpo_s: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
