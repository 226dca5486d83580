"""Query filters shared by the list endpoints: ``created_at[gte]`` and friends, ``include_archived``."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping

from . import errors

_COMPARISONS = {
    "gt": lambda value, bound: value > bound,
    "gte": lambda value, bound: value >= bound,
    "lt": lambda value, bound: value < bound,
    "lte": lambda value, bound: value <= bound,
}


def _timestamp(raw: str, name: str) -> float:
    try:
        moment = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise errors.invalid_request(f"{name} {raw!r} is not an RFC 3339 timestamp (e.g. 2026-04-01T12:00:00Z).")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def created_at_filter(query: Mapping[str, str]) -> Callable[[float], bool]:
    """A predicate on creation times built from every ``created_at[op]`` parameter present."""
    bounds = [
        (_COMPARISONS[op], _timestamp(query[f"created_at[{op}]"], f"created_at[{op}]"))
        for op in _COMPARISONS
        if query.get(f"created_at[{op}]")
    ]
    return lambda created: all(compare(created, bound) for compare, bound in bounds)


def include_archived(query: Mapping[str, str]) -> bool:
    return query.get("include_archived", "false").lower() == "true"
