"""The emulator's knobs: latency, injected faults, rate limits, version style, model noise, turn shapes.

The same names work as command-line flags (``--fault-500``), as keyword arguments
(``EmulatorServer(fault_500=0.1)``) and as JSON keys of ``POST /_emulator/config``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

VERSION_STYLES = ("sequential", "timestamp")
LOST_MODES = ("500", "close")  # how a lost response looks: a 500 after the work, or a dropped connection
DEPLOYMENT_LATEST_MODES = ("pin", "float")  # a bare agent id on a deployment: pinned at write time, or floating


class KnobError(ValueError):
    """A knob value that cannot be used; the message names the knob and the accepted values."""


@dataclasses.dataclass(frozen=True)
class Knobs:
    """One consistent set of knob values; replaced as a whole, never mutated."""

    latency_min: float = 0.05
    latency_max: float = 0.05
    fault_500: float = 0.0
    fault_429: float = 0.0
    fault_malformed: float = 0.0
    fault_stuck: float = 0.0
    fault_lost: float = 0.0
    lost_routes: str = ""  # comma-separated route names ("POST /v1/sessions"); empty = every route
    lost_mode: str = "500"
    fault_529: float = 0.0
    fault_routes: str = ""  # routes the 500/429/529 faults may hit; empty = every route
    fault_stream_error: float = 0.0  # per stream: an SSE `event: error` after `stream_fault_after` events
    fault_stream_close: float = 0.0  # per stream: the server closes it after `stream_fault_after` events
    stream_fault_after: int = 1
    fault_rescheduling: float = 0.0  # per turn: session.error (retrying), rescheduling, running again
    reschedule_delay: float = 0.1
    fault_terminated: float = 0.0  # per turn: session.error (terminal), then terminated, no reply
    fault_session_error: float = 0.0  # per turn: session.error (exhausted), idle with retries_exhausted
    turn_steps: int = 1  # model requests per turn, each with one agent.message; the last one answers
    interrupt_delay: float = 0.0  # seconds from user.interrupt to session.status_idle
    create_limit: int | None = None
    create_window: float = 60.0
    retry_after: float = 0.2
    versions: str = "sequential"
    deployment_latest: str = "pin"
    noise: float = 0.0
    seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """Knob values as JSON-friendly data, with latency in the flag's own syntax."""
        values = dataclasses.asdict(self)
        values["latency"] = latency_text(self.latency_min, self.latency_max)
        return values


KNOB_NAMES = frozenset(field.name for field in dataclasses.fields(Knobs)) | {"latency"}


def latency_text(minimum: float, maximum: float) -> str:
    """Render latency the way ``--latency`` accepts it, so it round-trips."""
    return f"{minimum:g}" if minimum == maximum else f"{minimum:g}-{maximum:g}"


def parse_latency(value: Any) -> tuple[float, float]:
    """Accept ``SECONDS`` or ``MIN-MAX`` (strings or numbers); a range is drawn uniformly per turn."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        minimum = maximum = float(value)
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        minimum, maximum = float(value[0]), float(value[1])
    elif isinstance(value, str):
        low, separator, high = value.strip().partition("-")
        try:
            minimum = float(low)
            maximum = float(high) if separator else minimum
        except ValueError:
            raise KnobError(f"latency {value!r} is not SECONDS or MIN-MAX (e.g. 0.05 or 0.1-0.5)") from None
    else:
        raise KnobError(f"latency {value!r} is not SECONDS or MIN-MAX (e.g. 0.05 or 0.1-0.5)")
    if minimum < 0 or maximum < minimum:
        raise KnobError(f"latency {value!r} must be non-negative with MIN <= MAX")
    return minimum, maximum


def _rate(name: str, value: Any) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise KnobError(f"{name} {value!r} is not a number between 0 and 1") from None
    if not 0.0 <= rate <= 1.0:
        raise KnobError(f"{name} {value!r} must be between 0 and 1 (a probability)")
    return rate


def _optional_int(name: str, value: Any, *, minimum: int) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise KnobError(f"{name} {value!r} is not a whole number") from None
    if number < minimum:
        raise KnobError(f"{name} {value!r} must be at least {minimum}")
    return number


def _seconds(name: str, value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise KnobError(f"{name} {value!r} is not a number of seconds") from None
    if seconds < 0:
        raise KnobError(f"{name} {value!r} must be 0 seconds or more")
    return seconds


def _positive_seconds(name: str, value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise KnobError(f"{name} {value!r} is not a number of seconds") from None
    if seconds <= 0:
        raise KnobError(f"{name} {value!r} must be greater than 0 seconds")
    return seconds


def _route_names(name: str, value: Any, known: Collection[str] | None) -> str:
    """Route names as stats count them (``POST /v1/sessions/{session_id}/events``), comma-separated."""
    if value is None:
        return ""
    names = value if isinstance(value, (list, tuple)) else str(value).split(",")
    wanted = [str(name).strip() for name in names if str(name).strip()]
    unknown = [name for name in wanted if known is not None and name not in known]
    if unknown:
        raise KnobError(f"{name} names unknown route(s) {', '.join(unknown)}; use names such as 'POST /v1/sessions'")
    return ",".join(wanted)


def lost_applies(knobs: Knobs, route_name: str) -> bool:
    """Whether the lost-response fault may hit ``route_name`` (every route when ``lost_routes`` is empty)."""
    return not knobs.lost_routes or route_name in knobs.lost_routes.split(",")


def fault_applies(knobs: Knobs, route_name: str) -> bool:
    """Whether the 500/429/529 faults may hit ``route_name`` (every route when ``fault_routes`` is empty)."""
    return not knobs.fault_routes or route_name in knobs.fault_routes.split(",")


def knobs_updated(current: Knobs, changes: Mapping[str, Any], *, route_names: Collection[str] | None = None) -> Knobs:
    """Return ``current`` with ``changes`` applied; unknown names and bad values are refused whole.

    ``route_names`` are the routes ``lost_routes`` may name (the caller passes
    ``routes.ROUTE_NAMES``: the routes import the state, which imports these knobs).

    Refusing the whole change keeps the running emulator in a state somebody asked for,
    instead of half of a configuration.
    """
    unknown = sorted(set(changes) - KNOB_NAMES)
    if unknown:
        raise KnobError(f"unknown knob(s) {', '.join(unknown)}; known knobs: {', '.join(sorted(KNOB_NAMES))}")
    values: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "latency":
            values["latency_min"], values["latency_max"] = parse_latency(value)
        elif name in ("latency_min", "latency_max"):
            values[name] = parse_latency(value)[0]
        elif name in ("lost_routes", "fault_routes"):
            values[name] = _route_names(name, value, route_names)
        elif name.startswith("fault_") or name == "noise":
            values[name] = _rate(name, value)
        elif name == "create_limit":
            values[name] = _optional_int(name, value, minimum=1)
        elif name in ("turn_steps", "stream_fault_after"):
            number = _optional_int(name, value, minimum=1 if name == "turn_steps" else 0)
            if number is None:
                raise KnobError(f"{name} needs a whole number")
            values[name] = number
        elif name in ("reschedule_delay", "interrupt_delay"):
            values[name] = _seconds(name, value)
        elif name == "seed":
            values[name] = _optional_int(name, value, minimum=0)
        elif name in ("create_window", "retry_after"):
            values[name] = _positive_seconds(name, value)
        elif name == "lost_mode":
            if str(value) not in LOST_MODES:
                raise KnobError(f"lost_mode {value!r} must be one of {', '.join(LOST_MODES)}")
            values[name] = str(value)
        elif name == "deployment_latest":
            if value not in DEPLOYMENT_LATEST_MODES:
                raise KnobError(f"deployment_latest {value!r} must be one of {', '.join(DEPLOYMENT_LATEST_MODES)}")
            values[name] = value
        elif name == "versions":
            if value not in VERSION_STYLES:
                raise KnobError(f"versions {value!r} must be one of {', '.join(VERSION_STYLES)}")
            values[name] = value
    updated = dataclasses.replace(current, **values)
    if updated.latency_max < updated.latency_min:
        raise KnobError("latency_max must not be below latency_min")
    return updated
