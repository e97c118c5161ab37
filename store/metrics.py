"""The metric registry: every goal and gate check names a metric registered here.

A metric computes one number for a window from raw store rows, with its sample count and a
short explanation. Its definition text is part of the product (the console shows it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

BASE_UNITS = ("s", "ratio", "count", "h")


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


@dataclass(frozen=True)
class Metric:
    """A registered metric: its id, base unit, allowed aggregations and its definition."""

    id: str
    unit: str
    aggregations: tuple[str, ...]
    definition: str
    page: str
    fn: MetricFn
    state: bool = False  # a state "as of the window's end" rather than a sum over samples


REGISTRY: dict[str, Metric] = {}


def metric(
    metric_id: str,
    *,
    unit: str,
    definition: str,
    page: str,
    aggregations: tuple[str, ...] = ("value",),
    state: bool = False,
) -> Callable[[MetricFn], MetricFn]:
    """Register ``fn`` as metric ``metric_id``."""
    if unit not in BASE_UNITS:
        raise ValueError(f"unit {unit!r} is not a base unit {BASE_UNITS}")

    def register(fn: MetricFn) -> MetricFn:
        REGISTRY[metric_id] = Metric(
            metric_id, unit, aggregations, " ".join(definition.split()), page, fn, state
        )
        return fn

    return register


def get_metric(metric_id: str) -> Metric:
    """Return the registered metric (importing the query modules that register them)."""
    import store.queries.catalog  # noqa: F401  (registers every metric)

    return REGISTRY[metric_id]


def known_metrics() -> dict[str, Metric]:
    """Return every registered metric by id."""
    import store.queries.catalog  # noqa: F401

    return dict(REGISTRY)
