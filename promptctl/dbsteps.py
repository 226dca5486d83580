"""Database steps of async views, run on a few long-lived threads that keep their connections.

Django runs an ASGI request's ``sync_to_async`` work on a thread made for that
request, so every triage call used to open and close its own database
connection: for SQLite that re-reads the schema (it cost more than the
queries), for PostgreSQL it is a new server backend per call. The triage
API's database work is a few short steps, each a plain function with its own
transaction, so they run here instead: ``PROMPTCTL_DB_THREADS`` threads per
process, each keeping its connection while it works.

Rules:

- A step is one function call; no transaction spans two steps.
- Before each step, a connection that has failed (say the database restarted)
  is closed, so the step reconnects. This is Django's own check
  (``close_if_unusable_or_obsolete``) without the age limit, which exists for
  connections of short-lived threads.
- When a synchronous caller is waiting on this event loop (``async_to_sync``:
  the test client, a management command), the step runs in that caller's
  thread, as Django's ``sync_to_async`` does, so it sees the caller's
  transaction.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import queue
import threading
from concurrent.futures import Executor, Future
from typing import Any, Callable, TypeVar

from asgiref.sync import AsyncToSync, sync_to_async
from django.conf import settings
from django.db import connections

T = TypeVar("T")


class _DatabaseThreads(Executor):
    """``count`` threads taking steps from one queue; each closes its connections when stopped."""

    def __init__(self, count: int) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"promptctl-db-{number}", daemon=True) for number in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        self._queue.put((future, function, args, kwargs))
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                connections.close_all()
                return
            future, function, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = function(*args, **kwargs)
            except BaseException as error:  # noqa: BLE001 - handed to the waiting coroutine
                future.set_exception(error)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


_threads_running: _DatabaseThreads | None = None
_threads_lock = threading.Lock()


def _threads() -> _DatabaseThreads:
    global _threads_running
    with _threads_lock:
        if _threads_running is None:
            _threads_running = _DatabaseThreads(max(1, settings.PROMPTCTL_DB_THREADS))
        return _threads_running


def threads_stop() -> None:
    """Finish queued steps, close the threads' connections and end them (tests; a process that exits needn't)."""
    global _threads_running
    with _threads_lock:
        running, _threads_running = _threads_running, None
    if running is not None:
        running.shutdown(wait=True)


def _connections_check() -> None:
    """Close this thread's connections that cannot be used any more; the next query reconnects."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is None:
            continue
        if connection.get_autocommit() != connection.settings_dict["AUTOCOMMIT"]:
            connection.close()  # a step left a transaction open: never carry it into the next one
        elif connection.errors_occurred:
            if connection.is_usable():
                connection.errors_occurred = False
            else:
                connection.close()


def _step(function: Callable[..., T], kwargs: dict[str, Any]) -> T:
    _connections_check()
    return function(**kwargs)


def _sync_caller_waiting() -> bool:
    """Whether an ``async_to_sync`` caller is blocked on this loop (asgiref keeps its thread's executor here)."""
    return getattr(AsyncToSync.executors, "current", None) is not None


async def db_step(function: Callable[..., T], /, **kwargs: Any) -> T:
    """Run ``function(**kwargs)`` (ORM work) off the event loop and return its result.

    Context variables (the request id of the audit trail) are carried into the
    step. A cancelled caller stops waiting; the step itself still finishes.
    """
    if _sync_caller_waiting():
        return await sync_to_async(function)(**kwargs)
    context = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_threads(), functools.partial(context.run, _step, function, kwargs))
