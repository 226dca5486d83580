"""Django's SQLite backend, with writers of one process handed the database in turn.

Why: promptctl's embedded default is SQLite in WAL mode with ``BEGIN IMMEDIATE``
transactions, so a transaction takes the database's single write lock when it
starts. A thread that finds the lock taken waits in SQLite's busy handler, which
polls with growing sleeps (1, 2, 5 … 50, 100 ms). When a worker's 20 threads
finish their sessions within a quarter of a second and each records a result,
the later ones sleep 100 ms between polls while the lock sits free: the last
results of an eval run arrived about 0.1 s apart (``make bench``,
``tutorial_vs_run``), which is what kept the run over its 2 s target.

Threads of one process now queue on a process-wide lock per database file
before they ask SQLite for its lock, and are woken the moment the holder
commits or rolls back. Between processes (the web server, other workers)
SQLite's own lock and busy handler still decide, as before. The wait is bounded
by the same ``timeout`` option as SQLite's, and ends in the same
``database is locked`` error.

It also keeps SQLite's planner statistics fresh (``PRAGMA optimize`` on close, below).
"""

from __future__ import annotations

import threading

from django.db import OperationalError
from django.db.backends.sqlite3 import base

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _write_lock(name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(name, threading.Lock())


class DatabaseWrapper(base.DatabaseWrapper):
    _holds_write_lock = False

    def _start_transaction_under_autocommit(self) -> None:
        if self.transaction_mode not in ("IMMEDIATE", "EXCLUSIVE") or self.is_in_memory_db():
            return super()._start_transaction_under_autocommit()
        lock = _write_lock(str(self.settings_dict["NAME"]))
        timeout = float(self.settings_dict.get("OPTIONS", {}).get("timeout", 5))
        if not lock.acquire(timeout=timeout):
            raise OperationalError("database is locked (waited for another thread of this process)")
        self._holds_write_lock = True
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._write_lock_release()
            raise

    def _write_lock_release(self) -> None:
        if self._holds_write_lock:
            self._holds_write_lock = False
            _write_lock(str(self.settings_dict["NAME"])).release()

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._write_lock_release()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._write_lock_release()

    def _close(self):
        try:
            self._planner_statistics_refresh()
            return super()._close()
        finally:
            self._write_lock_release()

    def _planner_statistics_refresh(self) -> None:
        """``PRAGMA optimize`` as the connection closes, as SQLite advises, so the planner has statistics.

        Without them SQLite guesses, and at 10⁵ rows it guessed wrong: the agent timeline's approvals
        were read through every change request of the agent and sorted (108 ms) instead of walked newest
        first through their own index (under 1 ms). ``optimize`` analyzes only the tables this connection's
        queries would have planned better with statistics that are missing or stale (grown 25×), so it is
        usually nothing; it gives up at once if another connection is writing (the next close tries again).
        """
        if self.connection is None or self.in_atomic_block or self.is_in_memory_db():
            return
        try:
            self.connection.execute("PRAGMA busy_timeout = 0")
            self.connection.execute("PRAGMA optimize")
        except self.Database.Error:  # busy or read-only: the statistics wait for the next close
            pass
