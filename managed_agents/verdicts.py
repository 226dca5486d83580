"""Turning an agent's reply into a routing verdict.

The agent is told to answer with one line of raw JSON, ``{"team": ..., "priority": ...}``.
Real models sometimes wrap it in a code fence or add a sentence; the verdict is
recovered from those (with a format warning) because the routing decision is
still clear. Anything else, or a label the prompt does not allow, is an
*invalid* verdict that keeps the raw reply: a result to count, never an
exception that stops a run.

The reply read here is the turn's *final* agent message (``managed_agents.sessions``):
a turn can hold several model requests and agent messages, and the earlier ones are
the agent working, not its answer. Concatenating them would turn narration into a
format warning, or two answers into one reply.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

VERDICT_OK = "ok"
VERDICT_INVALID = "invalid"

# `"team": "<billing|auth|api-platform|dashboard>"` in the prompt's output template.
_TEMPLATE_FIELD = re.compile(r'"(?P<key>[A-Za-z_][\w-]*)"\s*:\s*"<(?P<choices>[^<>"]+\|[^<>"]+)>"')
_CODE_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(?P<body>.*?)```", re.DOTALL)
REQUIRED_FIELDS = ("team", "priority")


@dataclass(frozen=True)
class Verdict:
    kind: str  # VERDICT_OK or VERDICT_INVALID
    team: str | None
    priority: str | None
    format_warning: str | None
    problem: str | None
    raw: str

    @property
    def ok(self) -> bool:
        return self.kind == VERDICT_OK


def allowed_labels(system_prompt: str) -> dict[str, tuple[str, ...]]:
    """The labels each output field may take, read from the prompt's output template.

    Only fields written as ``"key": "<a|b|c>"`` constrain the output; a prompt
    with no such template allows any string, and callers then skip validation.
    """
    return dict(_template_fields(system_prompt or ""))


@functools.lru_cache(maxsize=256)
def _template_fields(system_prompt: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``allowed_labels`` read once per prompt text: versions are immutable, and every triage call needs it."""
    labels: dict[str, tuple[str, ...]] = {}
    for match in _TEMPLATE_FIELD.finditer(system_prompt):
        choices = tuple(choice.strip() for choice in match.group("choices").split("|") if choice.strip())
        labels.setdefault(match.group("key"), choices)
    return tuple(labels.items())


def _json_objects_in(text: str):
    """Every JSON object embedded in ``text``, in order of appearance."""
    decoder = json.JSONDecoder()
    for start in (index for index, char in enumerate(text) if char == "{"):
        try:
            value, _end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            yield value


def _extract(reply: str) -> tuple[dict | None, str | None]:
    """The verdict object and a format warning (None when the reply was clean)."""
    stripped = reply.strip()
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        warning = None if "\n" not in stripped else "the JSON spans several lines instead of one"
        return value, warning
    fence = _CODE_FENCE.search(stripped)
    if fence:
        try:
            value = json.loads(fence.group("body").strip())
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value, "the JSON was wrapped in a code fence"
    for candidate in _json_objects_in(stripped):
        if any(field in candidate for field in REQUIRED_FIELDS):
            return candidate, "the JSON was surrounded by other text"
    return None, None


def _canonical(value: object, choices: tuple[str, ...]) -> tuple[str | None, bool]:
    """The allowed label ``value`` names, and whether only its case or spacing differed."""
    if not isinstance(value, str):
        return None, False
    if value in choices:
        return value, False
    folded = value.strip().casefold()
    for choice in choices:
        if choice.casefold() == folded:
            return choice, True
    return None, False


def verdict_parse(*, reply: str, allowed: dict[str, tuple[str, ...]]) -> Verdict:
    """Read a verdict from ``reply``, validating labels against ``allowed``."""
    raw = reply or ""
    found, warning = _extract(raw)
    if found is None:
        problem = "the reply is empty" if not raw.strip() else "no JSON object with team and priority in the reply"
        return Verdict(VERDICT_INVALID, None, None, None, problem, raw)
    values: dict[str, str | None] = {}
    problems: list[str] = []
    for field in REQUIRED_FIELDS:
        value = found.get(field)
        if value is None:
            problems.append(f"missing {field!r}")
            values[field] = None
            continue
        choices = allowed.get(field)
        if not choices:
            values[field] = value if isinstance(value, str) else None
            if values[field] is None:
                problems.append(f"{field!r} is not a string")
            continue
        label, case_differed = _canonical(value, choices)
        if label is None:
            problems.append(f"{field} {value!r} is not one of {'|'.join(choices)}")
        elif case_differed:
            warning = warning or f"{field} {value!r} differs from the allowed label {label!r} in case or spacing"
        values[field] = label
    if problems:
        return Verdict(VERDICT_INVALID, values["team"], values["priority"], warning, "; ".join(problems), raw)
    return Verdict(VERDICT_OK, values["team"], values["priority"], warning, None, raw)
