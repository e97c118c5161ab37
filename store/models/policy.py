"""Policy as code: OPA decisions, status reports, bundle revisions and pins."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, BigId


class OpaDecision(Base):
    """One OPA decision-log event; `decision_id` is unique because OPA re-sends failed chunks."""

    __tablename__ = "opa_decisions"
    __table_args__ = (
        UniqueConstraint("decision_id"),
        Index("ix_opa_decisions_timestamp", "timestamp"),
        Index("ix_opa_decisions_path_timestamp", "path", "timestamp"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    decision_id: Mapped[str] = mapped_column(String(100))
    timestamp: Mapped[datetime]
    received_at: Mapped[datetime]
    instance_id: Mapped[str] = mapped_column(String(200), index=True)
    environment: Mapped[str | None] = mapped_column(String(50))
    opa_version: Mapped[str | None] = mapped_column(String(50))
    path: Mapped[str] = mapped_column(String(500))
    allowed: Mapped[bool | None] = mapped_column(Boolean)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    bundles: Mapped[dict[str, Any]] = mapped_column(default=dict)
    erased: Mapped[list[Any]] = mapped_column(default=list)
    masked: Mapped[list[Any]] = mapped_column(default=list)
    input: Mapped[Any | None] = mapped_column(JSON)
    result: Mapped[Any | None] = mapped_column(JSON)
    requested_by: Mapped[str | None] = mapped_column(String(200))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # OPA's record of non-deterministic builtin results (`time.now_ns`, `rand.intn`, ...) when
    # `decision_logs.nd_builtin_cache: true`; the impact preview replays them. NULL: not sent.
    nd_builtin_cache: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class OpaStatusReport(Base):
    """Per instance and bundle: the revision OPA reported active at a moment (history kept)."""

    __tablename__ = "opa_status_reports"
    __table_args__ = (
        UniqueConstraint("instance_id", "bundle", "reported_at"),
        Index("ix_opa_status_reports_instance_bundle", "instance_id", "bundle"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str | None] = mapped_column(String(50))
    bundle: Mapped[str] = mapped_column(String(200))
    active_revision: Mapped[str | None] = mapped_column(String(200))
    last_successful_activation: Mapped[datetime | None]
    code: Mapped[str | None] = mapped_column(String(100))
    message: Mapped[str | None] = mapped_column(Text)
    reported_at: Mapped[datetime]
    # `labels.id`: OPA's per-process UUID (instance_id is the configured identity label).
    process_id: Mapped[str | None] = mapped_column(String(200))
    # The decision_logs plugin as the report tells it: state, code/message/http_code, drops.
    decision_logs: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class BundleRevision(Base):
    """A bundle revision known to the registry, with the result of verifying its signature."""

    __tablename__ = "bundle_revisions"
    __table_args__ = (UniqueConstraint("bundle", "revision"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bundle: Mapped[str] = mapped_column(String(200))
    revision: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any]] = mapped_column(default=dict)
    signature_status: Mapped[str] = mapped_column(String(20))  # verified | unsigned | invalid
    signature_detail: Mapped[str] = mapped_column(Text, default="")
    key_id: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(500))
    added_at: Mapped[datetime]


class BundlePin(Base):
    """The revision pinned for (bundle, environment) from `pinned_at` on; latest row wins."""

    __tablename__ = "bundle_pins"
    __table_args__ = (UniqueConstraint("bundle", "environment", "pinned_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bundle: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(50))
    revision: Mapped[str] = mapped_column(String(200))
    pinned_at: Mapped[datetime]
    pinned_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text, default="")


# Full-text search over decisions lives outside the SQLAlchemy metadata: an FTS5 virtual table
# (plus its shadow tables and triggers) on SQLite, an expression GIN index on PostgreSQL, both
# created by migration 0003. Autogenerate would otherwise propose dropping them.
DECISION_FTS_TABLE = "opa_decisions_fts"
DECISION_SEARCH_INDEX = "ix_opa_decisions_search"
# PostgreSQL side: split on every non-alphanumeric character so both dialects tokenise alike
# (FTS5's unicode61 does the same), then index with the language-neutral `simple` config.
DECISION_SEARCH_DOCUMENT = (
    "to_tsvector('simple'::regconfig, regexp_replace("
    "coalesce(input::text, '') || ' ' || coalesce(result::text, ''), "
    "'[^[:alnum:]]+', ' ', 'g'))"
)


def is_search_object(name: str | None) -> bool:
    """Whether a database object belongs to decision full-text search (not in the metadata)."""
    return bool(name) and (
        str(name).startswith(DECISION_FTS_TABLE) or name == DECISION_SEARCH_INDEX
    )


def _register_autogenerate_filter() -> None:
    """Keep autogenerate (and the no-diff migration test) blind to the search objects.

    Alembic's global comparator registry is its documented hook for extensions; a last-priority
    schema comparator drops the "remove" operations it produced for the FTS objects.
    """
    from alembic.autogenerate import comparators
    from alembic.operations import ops
    from alembic.util import DispatchPriority

    def _drop(items: list[Any]) -> list[Any]:
        kept = []
        for op in items:
            if isinstance(op, ops.DropTableOp) and is_search_object(op.table_name):
                continue
            if isinstance(op, ops.DropIndexOp) and is_search_object(op.index_name):
                continue
            if isinstance(op, ops.ModifyTableOps):
                op.ops = _drop(op.ops)
                if not op.ops:
                    continue
            kept.append(op)
        return kept

    @comparators.dispatch_for("schema", priority=DispatchPriority.LAST)
    def _ignore_search_objects(autogen_context: Any, upgrade_ops: Any, schemas: Any) -> None:
        upgrade_ops.ops = _drop(upgrade_ops.ops)


_register_autogenerate_filter()
