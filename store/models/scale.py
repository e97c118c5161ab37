"""Scale-out (issue 16): leader leases for pollers and daily decision rollups.

Day partitions of `traffic_samples` on PostgreSQL (`<table>_pYYYYMMDD`, `<table>_default`) are
created by migration 0012 and the maintenance job (store/retention.py), not by the metadata; the
autogenerate filter below keeps the no-diff migration test blind to them.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, BigId

PARTITIONED_TABLES = ("traffic_samples",)
_PARTITION_NAME = re.compile(rf"^(?:{'|'.join(PARTITIONED_TABLES)})_(?:p\d{{8}}|default)$")


class Lease(Base):
    """A named leader lease: whoever holds an unexpired row is the one replica allowed to act.

    `token` grows by one each time the lease changes hands (a fencing token); `last_run_at` is
    when the holder last started a pass, so a new leader waits out the interval instead of
    polling the source again at once.
    """

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    token: Mapped[int] = mapped_column(BigInteger, default=1)
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    last_run_at: Mapped[datetime | None]


class DecisionDaily(Base):
    """Decisions per UTC day, environment ('' when unlabelled) and policy path."""

    __tablename__ = "opa_decision_daily"
    __table_args__ = (
        UniqueConstraint("day", "environment", "path"),
        Index("ix_opa_decision_daily_path_day", "path", "day"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    day: Mapped[datetime]
    environment: Mapped[str] = mapped_column(String(50), default="")
    path: Mapped[str] = mapped_column(String(500))
    decisions: Mapped[int] = mapped_column(Integer, default=0)
    allowed: Mapped[int] = mapped_column(Integer, default=0)
    denied: Mapped[int] = mapped_column(Integer, default=0)
    undecided: Mapped[int] = mapped_column(Integer, default=0)
    dry_run: Mapped[int] = mapped_column(Integer, default=0)


def is_partition_object(name: str | None) -> bool:
    """Whether a table is one of the day partitions the maintenance job manages."""
    return bool(name) and bool(_PARTITION_NAME.match(str(name)))


def _register_autogenerate_filter() -> None:
    """Drop autogenerate's "remove table/index" operations for the partitions (see policy.py)."""
    from alembic.autogenerate import comparators
    from alembic.operations import ops
    from alembic.util import DispatchPriority

    def _keep(op: Any) -> bool:
        if isinstance(op, ops.DropTableOp):
            return not is_partition_object(op.table_name)
        if isinstance(op, ops.DropIndexOp | ops.CreateIndexOp):
            return not is_partition_object(op.table_name)
        if isinstance(op, ops.ModifyTableOps):
            return not is_partition_object(op.table_name)
        return True

    @comparators.dispatch_for("schema", priority=DispatchPriority.LAST)
    def _ignore_partitions(autogen_context: Any, upgrade_ops: Any, schemas: Any) -> None:
        upgrade_ops.ops[:] = [op for op in upgrade_ops.ops if _keep(op)]


_register_autogenerate_filter()
