"""What a decision search looks for, and how a person or an API caller asks for it.

`DecisionFilter` is the store's question; `parse_search_text` (the Policy page's search box:
`key:value` terms plus free words) and `parse_api_args` (`/api/decisions` query parameters) turn
what people type into one, with one message per problem naming the field, so the page and the
API refuse the same things the same way.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

_TERM = re.compile(r"[^\W_]+\*?", re.UNICODE)


@dataclass(frozen=True)
class DecisionFilter:
    """What to look for; every field narrows the result (None = no restriction).

    `text` is matched as words (letters and digits; a trailing `*` makes a prefix) that must
    all occur in the decision's input or result, through SQLite FTS5 or PostgreSQL full-text.
    """

    start: datetime | None = None
    end: datetime | None = None
    path: str | None = None
    allowed: bool | None = None
    instance_id: str | None = None
    environment: str | None = None
    revision: str | None = None
    decision_id: str | None = None
    text: str | None = None


def search_terms(text: str) -> list[str]:
    """Split free text into the words full-text search matches (lower case, `*` = prefix)."""
    return [t.lower() for t in _TERM.findall(text)]


# Search-box keys (and the API's query parameters) → DecisionFilter fields.
FIELD_ALIASES = {
    "path": "path",
    "instance": "instance_id",
    "instance_id": "instance_id",
    "env": "environment",
    "environment": "environment",
    "revision": "revision",
    "rev": "revision",
    "decision": "decision_id",
    "decision_id": "decision_id",
    "id": "decision_id",
    "allowed": "allowed",
    "verdict": "allowed",
    "since": "start",
    "until": "end",
    "q": "text",
}
SEARCH_KEYS = ("path", "instance", "env", "revision", "decision", "verdict", "since", "until")
API_PARAMS = frozenset(FIELD_ALIASES) | {"limit", "cursor"}
TRUE_WORDS = frozenset({"true", "allow", "allowed", "yes", "1"})
FALSE_WORDS = frozenset({"false", "deny", "denied", "no", "0"})


@dataclass
class ParsedSearch:
    """A filter and the problems found, keyed by control/parameter name."""

    filters: DecisionFilter
    errors: dict[str, str] = field(default_factory=dict)


def parse_time_bound(text: str, *, end: bool = False) -> datetime:
    """Parse `YYYY-MM-DD` (a whole day; as an end bound, through that day) or ISO 8601 time.

    A time without a zone is taken as UTC. Raises ValueError with a message a person can act on.
    """
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime.combine(day, time(0), tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date: use YYYY-MM-DD or an ISO 8601 time like 2025-11-12T10:00Z"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _verdict(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{text!r} is not a verdict: use allow or deny")


def _apply(values: dict[str, Any], errors: dict[str, str], key: str, raw: str) -> None:
    target = FIELD_ALIASES[key]
    try:
        if target == "start":
            values[target] = parse_time_bound(raw)
        elif target == "end":
            values[target] = parse_time_bound(raw, end=True)
        elif target == "allowed":
            values[target] = _verdict(raw)
        elif target == "text":
            if raw.strip() and not search_terms(raw):
                raise ValueError("has no words to search for (letters or digits)")
            values[target] = raw.strip() or None
        else:
            if len(raw) > 500:
                raise ValueError("is longer than 500 characters")
            values[target] = raw.strip() or None
    except ValueError as exc:
        errors[key] = f"{key}: {exc}"


def _check_range(values: dict[str, Any], errors: dict[str, str]) -> None:
    start, end = values.get("start"), values.get("end")
    if start is not None and end is not None and end <= start:
        errors["until"] = "until: must be after since"


def parse_search_text(text: str | None, *, since: str = "", until: str = "") -> ParsedSearch:
    """Parse the page's search box: `key:value` terms (see SEARCH_KEYS) plus free text.

    Free words are full-text matched over input and result; `verdict:deny`, `path:acme/*`.
    """
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    words: list[str] = []
    try:
        tokens = shlex.split(text or "")
    except ValueError:
        return ParsedSearch(DecisionFilter(), {"search": "search: unbalanced quotes"})
    for token in tokens:
        key, sep, raw = token.partition(":")
        # `http://…`-like words and times stay free text; only `name:` prefixes are fields.
        if sep and key.isidentifier() and not raw.startswith("//"):
            lowered = key.lower()
            if lowered not in FIELD_ALIASES or lowered == "q":
                errors["search"] = (
                    f"search: unknown field {key!r}; use one of {', '.join(SEARCH_KEYS)} "
                    "or plain words for full text"
                )
                continue
            _apply(values, errors, lowered, raw)
            if lowered in errors:
                errors["search"] = errors.pop(lowered)
            continue
        words.append(token)
    if words:
        _apply(values, errors, "q", " ".join(words))
        if "q" in errors:
            errors["search"] = "search: " + errors.pop("q").removeprefix("q: ")
    for name, raw in (("since", since), ("until", until)):
        if raw and raw.strip():
            _apply(values, errors, name, raw)
    _check_range(values, errors)
    return ParsedSearch(DecisionFilter(**values), errors)


def parse_api_args(args: Mapping[str, str]) -> tuple[ParsedSearch, int, str | None]:
    """Parse `/api/decisions` query parameters: (filter and errors, limit, cursor)."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key in args:
        if key not in API_PARAMS:
            errors[key] = f"{key}: unknown parameter; use one of {', '.join(sorted(API_PARAMS))}"
    for key, raw in args.items():
        if key in FIELD_ALIASES:
            _apply(values, errors, key, raw)
    _check_range(values, errors)
    limit = 100
    if "limit" in args:
        try:
            limit = int(args["limit"])
            if not 1 <= limit <= 1000:
                raise ValueError
        except ValueError:
            errors["limit"] = "limit: must be a whole number from 1 to 1000"
    return ParsedSearch(DecisionFilter(**values), errors), limit, args.get("cursor") or None
