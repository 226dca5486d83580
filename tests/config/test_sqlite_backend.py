"""The SQLite backend hands the write lock from thread to thread of one process (config/sqlite/base.py).

Each test opens its own connections to a database file of its own through the
backend's ``DatabaseWrapper`` and Django's ``atomic``, the way services do.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import OperationalError

from config.sqlite.base import DatabaseWrapper


def _wrapper(path, alias: str, timeout: float = 5) -> DatabaseWrapper:
    settings_dict = {
        "NAME": str(path),
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": timeout},
        "TIME_ZONE": None,
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
        "AUTOCOMMIT": True,
        "ATOMIC_REQUESTS": False,
        "USER": "",
        "PASSWORD": "",
        "HOST": "",
        "PORT": "",
        "TEST": {},
    }
    return DatabaseWrapper(settings_dict, alias=alias)


@pytest.fixture(autouse=True)
def _own_connections(django_db_blocker):
    """These connections are the test's own, not the project's database: pytest-django's guard does not apply."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "writers.sqlite3"
    setup = _wrapper(path, "setup")
    with setup.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("CREATE TABLE hits (thread INTEGER, n INTEGER)")
    setup.close()
    return path


def _write(path, alias: str, thread: int, rows: int, errors: list) -> None:
    connection = _wrapper(path, alias)
    try:
        for _ in range(rows):
            # A read, a pause and a write in one transaction: without the lock two threads would interleave here.
            with _atomic(connection):
                with connection.cursor() as cursor:
                    cursor.execute("SELECT count(*) FROM hits")
                    (before,) = cursor.fetchone()
                    time.sleep(0.001)
                    cursor.execute("INSERT INTO hits VALUES (%s, %s)", [thread, before])
    except Exception as error:  # noqa: BLE001 - reported by the test
        errors.append(error)
    finally:
        connection.close()


class _atomic:
    """``transaction.atomic`` for a connection that is not in ``settings.DATABASES``."""

    def __init__(self, connection: DatabaseWrapper) -> None:
        self.connection = connection

    def __enter__(self):
        self.connection.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
        self.connection.in_atomic_block = True

    def __exit__(self, kind, value, traceback):
        self.connection.in_atomic_block = False
        try:
            if kind is None:
                self.connection.commit()
            else:
                self.connection.rollback()
        finally:
            self.connection.set_autocommit(True)


def test_threads_of_one_process_write_in_turn_and_all_succeed(database):
    errors: list = []
    threads = [threading.Thread(target=_write, args=(database, f"writer{i}", i, 15, errors)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    reader = _wrapper(database, "reader")
    with reader.cursor() as cursor:
        cursor.execute("SELECT n FROM hits ORDER BY rowid")
        seen = [row[0] for row in cursor.fetchall()]
    reader.close()
    # Every transaction saw all earlier ones: the counts read inside them are 0, 1, 2, ... with no repeats.
    assert seen == list(range(12 * 15))


def test_a_rolled_back_or_closed_transaction_frees_the_lock_for_the_next_thread(database):
    first = _wrapper(database, "first")
    with pytest.raises(RuntimeError):
        with _atomic(first):
            with first.cursor() as cursor:
                cursor.execute("INSERT INTO hits VALUES (1, 1)")
            raise RuntimeError("boom")

    second = _wrapper(database, "second")
    second.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
    with second.cursor() as cursor:
        cursor.execute("INSERT INTO hits VALUES (2, 2)")
    second.close()  # mid-transaction: the connection goes away, and so must its hold on the lock

    # Had either kept its hold, this would wait its 1 s and fail with "database is locked".
    third = _wrapper(database, "third", timeout=1)
    with _atomic(third):
        with third.cursor() as cursor:
            cursor.execute("INSERT INTO hits VALUES (3, 3)")
            cursor.execute("SELECT thread FROM hits ORDER BY rowid")
            assert [row[0] for row in cursor.fetchall()] == [3]
    third.close()
    first.close()


def test_a_thread_that_waits_longer_than_the_timeout_gets_database_is_locked(database):
    holder = _wrapper(database, "holder")
    holder.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
    errors: list = []

    def wait() -> None:
        waiter = _wrapper(database, "waiter", timeout=0.3)
        try:
            waiter.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
        except OperationalError as error:
            errors.append(error)
        finally:
            waiter.close()

    worker = threading.Thread(target=wait)
    worker.start()
    worker.join(timeout=10)
    holder.rollback()
    holder.close()
    assert len(errors) == 1 and "database is locked" in str(errors[0])
