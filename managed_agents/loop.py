"""One event loop per process on which synchronous callers run the async session flow.

Why: a session is one flow (``managed_agents.sessions``), written once as
coroutines. The triage API awaits it on its own loop; Celery worker threads,
management commands and tests call the thin sync wrappers, which submit the
coroutine to this loop and wait for its result. Many threads then share one
loop and one async SDK client (one connection pool) instead of each holding a
client of its own.

The loop runs in a daemon thread started on first use, and again in a forked
child (a thread does not survive ``fork``).
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_owner_pid: int | None = None


def background_loop() -> asyncio.AbstractEventLoop:
    """This process's background loop, started on first use."""
    global _loop, _owner_pid
    with _lock:
        if _loop is None or _owner_pid != os.getpid() or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="managed-agents-loop", daemon=True)
            thread.start()
            _loop, _owner_pid = loop, os.getpid()
        return _loop


def run_sync(function: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``function(*args, **kwargs)`` on the background loop and wait for it.

    Refused on a thread that is running an event loop itself: that caller must
    ``await`` the coroutine instead of blocking its own loop. If the waiting
    thread is interrupted, the coroutine is cancelled; the session flow's own
    shielded clean-up still archives its session.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(f"{function.__name__} called from a running event loop: await it instead")
    future = asyncio.run_coroutine_threadsafe(function(*args, **kwargs), background_loop())
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise


def sync_entry(function: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """The synchronous entry to the coroutine function ``function``: same arguments, run by ``run_sync``."""

    @functools.wraps(function)
    def entry(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(function, *args, **kwargs)

    entry.__name__ = entry.__qualname__ = function.__name__.removesuffix("_async")
    entry.__doc__ = f"``{function.__name__}`` for synchronous callers, run on the process's background loop."
    return entry
