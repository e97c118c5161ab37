"""What a metric function takes and returns: a time window and a value with its sample count.

Query modules import these; they import nothing that registers metrics (that is
:mod:`store.metrics`, the one place every metric is registered).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Window:
    """A half-open time window [start, end) in aware UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"window end {self.end} is not after start {self.start}")


@dataclass
class MetricValue:
    """One computed value in the metric's base unit; ``value is None`` means no data."""

    value: float | None
    samples: int
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


MetricFn = Callable[[Session, Window, str, dict[str, Any]], MetricValue]
"""A metric over one window: (session, window, aggregation, params) → value."""

DailyFn = Callable[[Session, Sequence[Window], str, dict[str, Any]], list[MetricValue]]
"""A metric over several windows at once, one value per window, in as few statements as the
metric needs however many windows there are (the goal trend). The windows are either
consecutive and disjoint (sums, percentiles) or share their start (state metrics, read as of
each window's end); either way the values equal the :data:`MetricFn` of each window."""
