"""The emulator's own endpoints under ``/_emulator/``: knobs, statistics, reset.

They are never faulted or rate-limited and are not counted in request statistics, so a
test can always steer and inspect the emulator whatever the knobs say.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import deployments, errors
from .eventlog import close_streams
from .knobs import KnobError, knobs_updated
from .routes import ROUTE_NAMES
from .state import EmulatorState


def configure(state: EmulatorState, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Apply knob changes (same names as the flags, with underscores); returns every knob's value."""
    with state.lock:
        try:
            state.set_knobs(
                knobs_updated(state.knobs, changes, route_names=ROUTE_NAMES), restart_dice="seed" in changes
            )
        except KnobError as refusal:
            raise errors.invalid_request(str(refusal)) from None
        return state.knobs.as_dict()


def knobs(state: EmulatorState) -> dict[str, Any]:
    with state.lock:
        return state.knobs.as_dict()


def stats(state: EmulatorState) -> dict[str, Any]:
    with state.lock:
        return state.stats()


def reset(state: EmulatorState) -> dict[str, Any]:
    """Drop every resource and restore default knobs; open streams of dropped sessions end."""
    with state.lock:
        for session in state.reset():
            session.turn = None
            close_streams(session)
        return state.stats()


CONTROL_ROUTES = {
    ("GET", "/_emulator/config"): lambda state, body: knobs(state),
    ("POST", "/_emulator/config"): configure,
    ("GET", "/_emulator/stats"): lambda state, body: stats(state),
    ("POST", "/_emulator/reset"): lambda state, body: reset(state),
    ("POST", "/_emulator/deployments/fire"): lambda state, body: deployments.deployment_fire_scheduled(
        state, str(body.get("deployment_id") or "")
    ),
}
