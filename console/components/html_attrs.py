"""Hyphenated HTML attributes (`data-*`, `aria-*`) for Dash html components.

Dash accepts them as keyword arguments that Python can only spell through `**`; typing the mapping
as `dict[str, Any]` keeps the components' typed signatures checkable.
"""

from __future__ import annotations

from typing import Any


def data_attrs(**values: object) -> dict[str, Any]:
    """`data_goal="x"` → `{"data-goal": "x"}`."""
    return {f"data-{name.replace('_', '-')}": value for name, value in values.items()}


def aria_attrs(**values: object) -> dict[str, Any]:
    """`label="Goals"` → `{"aria-label": "Goals"}`."""
    return {f"aria-{name.replace('_', '-')}": value for name, value in values.items()}
