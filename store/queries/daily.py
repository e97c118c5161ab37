"""Helpers for metrics over many windows in one statement (the goal trend).

Consecutive windows are told apart in SQL by a CASE over their bounds (``window_index``), so a
sum over each day is one ``GROUP BY`` with exactly the bounds a per-day query would use, on
SQLite and PostgreSQL alike. State metrics ("as of the window's end") use ``tagged_union``: the
per-window statements as one ``UNION ALL``, each arm tagged with its window's index.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Any, TypeAlias

import pandas as pd
from sqlalchemy import ColumnElement, Select, case, literal, select, union_all
from sqlalchemy.orm import Session

from store.measures import Window
from store.queries.frames import frame

INDEX = "window_index"
Statement: TypeAlias = Select[*tuple[Any, ...]]
"""A select of any columns (what the per-window statement builders return)."""


def check_consecutive(windows: Sequence[Window]) -> None:
    """Refuse windows that are not consecutive and disjoint (each starts where the last ended)."""
    for before, after in pairwise(windows):
        if after.start != before.end:
            raise ValueError(f"windows are not consecutive: {before} then {after}")


def span(windows: Sequence[Window]) -> Window:
    """The one window that covers consecutive ``windows``."""
    check_consecutive(windows)
    return Window(windows[0].start, windows[-1].end)


def within(column: Any, windows: Sequence[Window]) -> ColumnElement[bool]:
    """``column`` in [first start, last end) of consecutive ``windows``."""
    whole = span(windows)
    return (column >= whole.start) & (column < whole.end)  # type: ignore[no-any-return]


def window_index(column: Any, windows: Sequence[Window]) -> ColumnElement[Any]:
    """The index of the window ``column`` falls in (use with :func:`within`)."""
    check_consecutive(windows)
    whens = [(column < w.end, i) for i, w in enumerate(windows[:-1])]
    if not whens:
        return literal(0).label(INDEX)
    return case(*whens, else_=len(windows) - 1).label(INDEX)


def grouped(
    session: Session, stmt: Statement, windows: Sequence[Window], columns: list[str]
) -> list[pd.Series | None]:
    """Run ``stmt`` (window index first, then ``columns``) and return each window's row.

    A window without rows gets None.
    """
    df = frame(session, stmt, [INDEX, *columns])
    rows: list[pd.Series | None] = [None] * len(windows)
    for _, row in df.iterrows():
        rows[int(row[INDEX])] = row
    return rows


def tagged_union(arms: Iterable[Statement]) -> Statement:
    """One statement: each per-window select tagged with its index (``window_index``) first."""
    subqueries = [arm.subquery() for arm in arms]
    tagged = [select(literal(i).label(INDEX), *sub.c) for i, sub in enumerate(subqueries)]
    if len(tagged) == 1:
        return tagged[0]
    union = union_all(*tagged).subquery()
    return select(*union.c)


def split(df: pd.DataFrame, n: int) -> list[pd.DataFrame]:
    """Split a frame with a ``window_index`` column into ``n`` frames without that column."""
    parts = []
    for i in range(n):
        part = df[df[INDEX] == i].drop(columns=[INDEX])
        parts.append(part.reset_index(drop=True))
    return parts


def split_by_time(df: pd.DataFrame, column: str, windows: Sequence[Window]) -> list[pd.DataFrame]:
    """The rows of ``df`` whose ``column`` (a timestamp) falls in each window."""
    if not len(df):
        return [df.copy() for _ in windows]
    times = pd.to_datetime(df[column], utc=True)  # naive values are UTC already (as_utc)
    return [
        df[(times >= pd.Timestamp(w.start)) & (times < pd.Timestamp(w.end))].reset_index(drop=True)
        for w in windows
    ]
