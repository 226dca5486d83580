"""The SDK clients, the errors every Managed Agents call raises, and the one retry policy.

Rules this module keeps, and why:

- One SDK client per process (and one async client per event loop), built
  from settings. Only the base URL and the key differ between the live API and
  the local emulator, so the emulator exercises exactly the code path
  production uses.
- The SDK's own retries are off (``max_retries=0``): every call goes through
  ``with_retries`` / ``with_retries_async``, which retry transient failures
  (429 honouring ``retry-after``, 5xx, connection errors) with bounded,
  jittered backoff and count the attempts. Both loops ask one ``_Retries``
  object what to do, so the sync and async paths cannot drift apart.
- A retry must not do the work twice. After a failure whose outcome is
  unknown (a connection error, a timeout, a 5xx: the server may have carried
  the request out and lost only the answer), a call that is not idempotent
  passes ``landed``: a read that finds the earlier attempt's result by a
  client-generated marker. It runs before the next attempt, and what it finds
  is returned instead of sending again. A 429 is known not to have been
  carried out, so it is retried without looking.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from django.conf import settings

from managed_agents.errors import DomainError

if TYPE_CHECKING:
    import anthropic
else:
    from managed_agents.sdk import anthropic  # the SDK is imported on first use (managed_agents.sdk)

logger = logging.getLogger("managed_agents.gateway")

T = TypeVar("T")

OFFLINE_PLACEHOLDER_KEY = "promptctl-offline"  # the emulator accepts any key
# The SDK's own default endpoint, passed explicitly: an empty ANTHROPIC_BASE_URL in the
# environment would otherwise reach the SDK as an empty base URL.
LIVE_API_BASE_URL = "https://api.anthropic.com"


# --- Errors -----------------------------------------------------------------


class GatewayError(DomainError):
    """Managed Agents refused or failed; the message says what to do next."""


class VersionConflict(GatewayError):
    """A conditional update named a version that is no longer the agent's latest."""

    def __init__(self, message: str, *, server_version: int | None) -> None:
        super().__init__(message)
        self.server_version = server_version


class UpstreamUnavailable(GatewayError):
    """Transient failures (429, 5xx, connection) outlasted the bounded retries."""

    retry_after: float | None = None  # seconds the server last advised waiting, when it said


class SessionTimeout(GatewayError):
    """The session did not finish its turn within the timeout; it was interrupted and archived."""


def describe(error: Exception) -> str:
    if isinstance(error, anthropic.APIStatusError):
        return f"HTTP {error.status_code}: {getattr(error, 'message', str(error))}"
    return f"{type(error).__name__}: {error}"


def refusal(error: anthropic.APIStatusError, *, what: str) -> GatewayError:
    return GatewayError(f"Managed Agents refused to {what}: {describe(error)}")


# --- Clients ----------------------------------------------------------------

_client_lock = threading.Lock()
_client: anthropic.Anthropic | None = None
_client_key: tuple[str, str] | None = None
_async_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, tuple[tuple[str, str], anthropic.AsyncAnthropic]
] = weakref.WeakKeyDictionary()


def _client_settings() -> tuple[str, str]:
    base_url = settings.ANTHROPIC_BASE_URL or ""
    api_key = settings.ANTHROPIC_API_KEY or ""
    if not api_key:
        if not base_url:
            raise GatewayError(
                "No Managed Agents endpoint configured: set ANTHROPIC_API_KEY for the live API, "
                "or ANTHROPIC_BASE_URL to a local emulator (`python manage.py emulator`)."
            )
        api_key = OFFLINE_PLACEHOLDER_KEY
    return base_url, api_key


def _client_options(key: tuple[str, str]) -> dict:
    base_url, api_key = key
    return {
        "api_key": api_key,
        "base_url": base_url or LIVE_API_BASE_URL,
        "max_retries": 0,
        "timeout": anthropic.Timeout(60.0, connect=10.0),
    }


def client() -> anthropic.Anthropic:
    """The process's SDK client; rebuilt only when the endpoint settings change."""
    global _client, _client_key
    key = _client_settings()
    with _client_lock:
        if _client is None or _client_key != key:
            _client = anthropic.Anthropic(**_client_options(key))
            _client_key = key
        return _client


def async_client() -> anthropic.AsyncAnthropic:
    """The running event loop's async SDK client (one per loop: its connection pool belongs to that loop).

    Under uvicorn there is one loop per process; sync callers share the
    gateway's background loop (``managed_agents.loop``), so this is one client
    per process either way. A loop that ends takes its client with it.
    """
    loop = asyncio.get_running_loop()
    key = _client_settings()
    with _client_lock:
        entry = _async_clients.get(loop)
        if entry is None or entry[0] != key:
            entry = (key, anthropic.AsyncAnthropic(**_client_options(key)))
            _async_clients[loop] = entry
        return entry[1]


def client_reset() -> None:
    """Forget the cached clients (tests that point settings at another endpoint)."""
    global _client, _client_key
    with _client_lock:
        _client = None
        _client_key = None
        _async_clients.clear()


# --- Retries ----------------------------------------------------------------


@dataclass
class Attempts:
    total: int = 0
    retries: int = 0
    unknown_outcomes: int = 0  # failures after which the request may have been carried out
    adopted: int = 0  # retries answered by what an earlier attempt had already done


def retry_after_seconds(error: anthropic.APIStatusError) -> float | None:
    headers = error.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            continue
    return None


def is_transient(error: Exception) -> bool:
    if isinstance(error, (anthropic.APIConnectionError, anthropic.APITimeoutError)):
        return True
    if isinstance(error, anthropic.APIStatusError):
        return error.status_code == 429 or error.status_code >= 500 or error.status_code == 408
    return False


def outcome_unknown(error: Exception) -> bool:
    """A failure after which the server may have carried the request out (only its answer was lost)."""
    if isinstance(error, anthropic.APIConnectionError):  # timeouts included
        return True
    return isinstance(error, anthropic.APIStatusError) and (error.status_code >= 500 or error.status_code == 408)


def _backoff_seconds(retry_number: int, error: Exception) -> float:
    """Server-advised wait when given, else capped exponential backoff with full jitter."""
    if isinstance(error, anthropic.APIStatusError):
        advised = retry_after_seconds(error)
        if advised is not None:
            return min(advised, settings.PROMPTCTL_BACKOFF_CAP) + random.uniform(0, 0.05)
    ceiling = min(settings.PROMPTCTL_BACKOFF_CAP, settings.PROMPTCTL_BACKOFF_BASE * (2**retry_number))
    return random.uniform(ceiling / 2, ceiling)


class _Retries:
    """The retry policy of one call: counts attempts, says how long to pause, or raises.

    ``pause_after(error)`` re-raises a non-transient error as it is, raises
    ``UpstreamUnavailable`` once the attempt budget or the deadline is spent,
    and otherwise returns the seconds to wait before the next attempt.
    """

    def __init__(self, *, what: str, attempts: Attempts | None, deadline: float | None) -> None:
        self.what = what
        self.counter = attempts if attempts is not None else Attempts()
        self.deadline = deadline
        self.max_attempts = max(1, settings.PROMPTCTL_MAX_ATTEMPTS)
        self.attempt_number = -1
        self.checks = False  # the call has a ``landed`` lookup
        self.must_check = False  # look for the earlier attempt's result before sending again

    def begin(self) -> None:
        self.attempt_number += 1
        self.counter.total += 1

    def pause_after(self, error: Exception, *, checking: bool = False) -> float:
        """Seconds to wait before the next attempt; ``checking``: ``error`` came from a ``landed`` lookup."""
        if not is_transient(error):
            raise error
        if not checking and outcome_unknown(error):
            self.counter.unknown_outcomes += 1
            self.must_check = self.checks
        elif not checking:
            self.must_check = False
        pause = None
        if self.attempt_number + 1 < self.max_attempts:
            pause = _backoff_seconds(self.attempt_number, error)
            if self.deadline is not None and time.monotonic() + pause > self.deadline:
                pause = None
        if pause is None:
            raise self._exhausted(error) from error
        self.counter.retries += 1
        logger.info("%s failed (%s); retry %d in %.2fs", self.what, describe(error), self.attempt_number + 1, pause)
        return pause

    def adopt(self) -> None:
        self.counter.adopted += 1
        logger.info("%s: the earlier attempt had been carried out; using it instead of sending again", self.what)

    def _exhausted(self, last: Exception) -> UpstreamUnavailable:
        error = UpstreamUnavailable(
            f"Managed Agents could not {self.what} after {self.counter.total} attempts ({describe(last)}). "
            "The service is overloaded or unreachable; try again later or lower the request rate."
        )
        # The server's own advice (429/503 retry-after), for callers that pass it on to theirs.
        error.retry_after = retry_after_seconds(last) if isinstance(last, anthropic.APIStatusError) else None
        return error


def with_retries(
    call: Callable[[], T],
    *,
    what: str,
    attempts: Attempts | None = None,
    deadline: float | None = None,
    landed: Callable[[], T | None] | None = None,
) -> T:
    """Run ``call``, retrying transient failures; raise ``UpstreamUnavailable`` when they outlast the budget.

    With ``landed``, a retry after an unknown outcome first asks it for the
    earlier attempt's result and returns that when it finds one.
    """
    policy = _Retries(what=what, attempts=attempts, deadline=deadline)
    policy.checks = landed is not None
    while True:
        policy.begin()
        checking = policy.must_check
        try:
            if checking and landed is not None:
                found = landed()
                if found is not None:
                    policy.adopt()
                    return found
                policy.must_check = checking = False
            return call()
        except Exception as error:  # noqa: BLE001 - the policy re-raises what is not transient
            time.sleep(policy.pause_after(error, checking=checking))


async def with_retries_async(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    attempts: Attempts | None = None,
    deadline: float | None = None,
    landed: Callable[[], Awaitable[T | None]] | None = None,
) -> T:
    """``with_retries`` for coroutines: the same policy object, so the same budget, backoff and lookups."""
    policy = _Retries(what=what, attempts=attempts, deadline=deadline)
    policy.checks = landed is not None
    while True:
        policy.begin()
        checking = policy.must_check
        try:
            if checking and landed is not None:
                found = await landed()
                if found is not None:
                    policy.adopt()
                    return found
                policy.must_check = checking = False
            return await call()
        except Exception as error:  # noqa: BLE001 - the policy re-raises what is not transient
            await asyncio.sleep(policy.pause_after(error, checking=checking))
