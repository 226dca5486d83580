"""The database side of async views: steps on long-lived threads that keep their connections, compiled reads.

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
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from asgiref.sync import AsyncToSync, sync_to_async
from django.conf import settings
from django.db import connections
from django.db.models import QuerySet

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


def sync_caller_waiting() -> bool:
    """Whether an ``async_to_sync`` caller is blocked on this loop (asgiref keeps its thread's executor here)."""
    return getattr(AsyncToSync.executors, "current", None) is not None


async def db_step(function: Callable[..., T], /, **kwargs: Any) -> T:
    """Run ``function(**kwargs)`` (ORM work) off the event loop and return its result.

    Context variables (the request id of the audit trail) are carried into the
    step. A cancelled caller stops waiting; the step itself still finishes.
    """
    if sync_caller_waiting():
        return await sync_to_async(function)(**kwargs)
    context = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_threads(), functools.partial(context.run, _step, function, kwargs))


class CompiledRead:
    """A hot one-row read: the ORM compiles its SQL once per database, each call runs that SQL with new values.

    Django compiles a queryset's SQL on every evaluation; for the joined pin
    read of every triage call, compiling cost more than reading. ``build``
    takes string parameters by keyword and returns the queryset; it is compiled
    once with a marker in each parameter's place, and every call substitutes
    the real values. Refused at compile time: a parameter the lookup rewrites
    (``contains`` wraps it in ``%``), and fields whose values Django converts
    after reading (booleans on SQLite, dates), which the raw row would not get.
    """

    def __init__(self, build: Callable[..., QuerySet], *, fields: Sequence[str]) -> None:
        self._build = build
        self._fields = tuple(fields)
        self._compiled: dict[tuple[str, tuple[str, ...]], tuple[str, tuple[Any, ...], dict[str, int]]] = {}

    def _compile(self, using: str, names: tuple[str, ...]) -> tuple[str, tuple[Any, ...], dict[str, int]]:
        markers = {name: f"\x00compiled-read:{name}\x00" for name in names}
        queryset = self._build(**markers).values_list(*self._fields)[:1]
        compiler = queryset.query.get_compiler(using)
        sql, params = compiler.as_sql()
        if compiler.get_converters([expression for expression, _sql, _alias in compiler.select]):
            raise ValueError(f"CompiledRead: Django converts some of {self._fields} after reading; select others")
        positions = {}
        for name, marker in markers.items():
            found = [index for index, param in enumerate(params) if param == marker]
            if len(found) != 1:
                raise ValueError(f"CompiledRead: parameter {name!r} must be used once, as given, in the query")
            positions[name] = found[0]
        return sql, tuple(params), positions

    def first(self, *, using: str = "default", **values: str) -> dict[str, Any] | None:
        """The first row for these parameter values, as ``{field: value}``, or None."""
        key = (using, tuple(sorted(values)))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(using, key[1])
        sql, template, positions = compiled
        params = list(template)
        for name, value in values.items():
            params[positions[name]] = value
        with connections[using].cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        return None if row is None else dict(zip(self._fields, row, strict=True))
