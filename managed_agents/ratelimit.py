"""One session-creation budget shared by every worker of a deployment.

The rule: in any window of ``PROMPTCTL_SESSION_CREATE_WINDOW`` seconds (60)
promptctl starts at most ``PROMPTCTL_SESSION_CREATE_BUDGET`` sessions (300, the
published org limit for creates), however many workers and threads there are.
Runs therefore never burst into 429s; a 429 that still comes (another client
of the same org) is honoured by the gateway's ``retry-after`` handling.

Algorithm: GCRA (a token bucket kept as one timestamp, the "theoretical arrival
time"). It lets ``PROMPTCTL_SESSION_CREATE_BURST`` (20) sessions start at once,
so a small run does not wait at all, and then spaces the rest evenly at
``(window + margin) / (budget - burst)``. Any window of ``window + margin``
seconds then holds at most ``burst + (budget - burst) = budget`` starts,
whether the server counts a sliding window, a fixed window or a token bucket.
The margin (``PROMPTCTL_SESSION_CREATE_MARGIN``, 1 s) absorbs the delay between
a slot and the request reaching the server (thread wake-up, connection set-up):
a request that arrives up to that late still cannot make the server see more
than ``budget`` in its window. Each caller *reserves* a slot
(one atomic step) and sleeps until it, so waiting callers are served in
order without polling.

Where the timestamp lives:

* ``redis``: when ``CELERY_BROKER_URL`` (or ``PROMPTCTL_RATE_LIMIT_REDIS_URL``)
  is ``redis://``, a Lua script updates one key atomically using the Redis
  server's clock, so workers on several hosts share one budget.
* ``file``: otherwise a file under ``PROMPTCTL_VAR_DIR/ratelimit`` guarded by
  ``flock``: every process on this host shares it. The embedded broker is
  single-host by nature, so this covers every worker that can share its queue.
* ``off``: no limiting (``PROMPTCTL_RATE_LIMITER=off``), for tests of other things.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

SESSION_CREATE_KEY = "sessions.create"

_GCRA_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return string.format('%.6f', wait)
"""


@dataclass(frozen=True)
class Budget:
    """``budget`` starts per ``window`` seconds, the first ``burst`` of them at once."""

    budget: int
    window: float
    burst: int
    margin: float = 0.0

    def __post_init__(self) -> None:
        if self.budget < 1 or self.window <= 0 or self.margin < 0:
            raise ValueError("a rate budget needs budget >= 1, window > 0 and margin >= 0")
        if not 1 <= self.burst < self.budget:
            raise ValueError(f"burst must be between 1 and budget - 1 ({self.budget - 1}), got {self.burst}")

    @property
    def interval(self) -> float:
        return (self.window + self.margin) / (self.budget - self.burst)

    @property
    def tolerance(self) -> float:
        return (self.burst - 1) * self.interval


def gcra_reserve(*, stored_tat: float, now: float, budget: Budget) -> tuple[float, float]:
    """(seconds to wait, new stored timestamp) for one reservation; the pure core of every backend."""
    tat = max(stored_tat, now)
    wait = max(0.0, tat - budget.tolerance - now)
    return wait, tat + budget.interval


class FileLimiter:
    """The GCRA timestamp in a file, updated under an exclusive ``flock``."""

    kind = "file"

    def __init__(self, *, directory: Path, key: str, budget: Budget) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{key}.gcra"
        self.budget = budget

    def reserve(self) -> float:
        with open(self.path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                handle.seek(0)
                text = handle.read().strip()
                stored = float(text) if text else 0.0
                # Wall clock, not monotonic: the timestamp is shared between processes.
                wait, new_tat = gcra_reserve(stored_tat=stored, now=time.time(), budget=self.budget)
                handle.seek(0)
                handle.truncate()
                handle.write(f"{new_tat:.6f}")
                handle.flush()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return wait


class RedisLimiter:
    """The GCRA timestamp in one Redis key, updated by a Lua script on the server's clock."""

    kind = "redis"

    def __init__(self, *, url: str, key: str, budget: Budget) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.key = f"promptctl:ratelimit:{key}"
        self.script = self.client.register_script(_GCRA_SCRIPT)
        self.budget = budget

    def reserve(self) -> float:
        return float(self.script(keys=[self.key], args=[repr(self.budget.interval), repr(self.budget.tolerance)]))

    def reset(self) -> None:
        self.client.delete(self.key)


class NoLimiter:
    kind = "off"

    def reserve(self) -> float:
        return 0.0


_limiters: dict[tuple, object] = {}
_limiters_lock = threading.Lock()


def session_budget() -> Budget:
    return Budget(
        budget=settings.PROMPTCTL_SESSION_CREATE_BUDGET,
        window=settings.PROMPTCTL_SESSION_CREATE_WINDOW,
        burst=settings.PROMPTCTL_SESSION_CREATE_BURST,
        margin=settings.PROMPTCTL_SESSION_CREATE_MARGIN,
    )


def limiter_for(*, key: str = SESSION_CREATE_KEY):
    """The limiter the settings select, built once per process and configuration."""
    choice = settings.PROMPTCTL_RATE_LIMITER
    redis_url = settings.PROMPTCTL_RATE_LIMIT_REDIS_URL or (
        settings.CELERY_BROKER_URL if settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
    )
    if choice == "auto":
        choice = "redis" if redis_url else "file"
    budget = session_budget()
    cache_key = (choice, key, budget, redis_url, str(settings.VAR_DIR))
    with _limiters_lock:
        limiter = _limiters.get(cache_key)
        if limiter is None:
            if choice == "redis":
                if not redis_url:
                    raise ValueError(
                        "PROMPTCTL_RATE_LIMITER=redis needs a redis:// CELERY_BROKER_URL or PROMPTCTL_RATE_LIMIT_REDIS_URL"
                    )
                limiter = RedisLimiter(url=redis_url, key=key, budget=budget)
            elif choice == "file":
                limiter = FileLimiter(directory=Path(settings.VAR_DIR) / "ratelimit", key=key, budget=budget)
            elif choice == "off":
                limiter = NoLimiter()
            else:
                raise ValueError(f"PROMPTCTL_RATE_LIMITER must be auto, redis, file or off, got {choice!r}")
            _limiters[cache_key] = limiter
        return limiter


def session_slot_reserve(*, key: str = SESSION_CREATE_KEY) -> float:
    """Take this caller's slot now and return the seconds until it (the caller waits them, not this function).

    The session flow passes it as ``before_create`` and awaits the wait on its
    event loop rather than sleeping in one of the loop's helper threads.
    """
    return limiter_for(key=key).reserve()


def limiter_reset(*, key: str = SESSION_CREATE_KEY) -> None:
    """Forget the shared timestamp (tests and benchmarks start from a full bucket)."""
    limiter = limiter_for(key=key)
    if isinstance(limiter, RedisLimiter):
        limiter.reset()
    elif isinstance(limiter, FileLimiter):
        try:
            os.unlink(limiter.path)
        except FileNotFoundError:
            pass
