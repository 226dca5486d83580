"""One migrated template database per test run, copied for each pytest-xdist worker (no tests or fixtures here).

pytest-django gives every xdist worker its own test database (``..._gw0``) and
migrates each one: with several workers on two cores that is the slowest part
of the run. Instead the first worker to take the lock migrates a template
(``test_promptctl_template``) once per run, and every worker copies it:
``CREATE DATABASE ... TEMPLATE`` on PostgreSQL, SQLite's online backup on
SQLite. The copy is the same schema, triggers and migration data that
``migrate`` would have made, so the tests see the database they always did.

The template is kept between runs (it is migrated afresh by the first worker
of the next run); ``template_drop`` removes it when a run ends.

On SQLite the record's tables refuse DELETE, which Django's flush after a
transactional test uses; each such test's database is first restored from a
copy taken after migrating (``sqlite_pristine_copy_take``), so the flush finds
those tables empty. PostgreSQL's flush is a TRUNCATE and needs nothing.
"""

from __future__ import annotations

import fcntl
import sqlite3
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.test.utils import setup_databases

TEMPLATE_SUFFIX = "_template"


def _is_sqlite() -> bool:
    return connection.vendor == "sqlite"


def _shared_var_dir() -> Path:
    """``<var>``: tests.settings puts each worker's state in ``<var>/xdist-gwN``."""
    var_dir = Path(settings.VAR_DIR)
    return var_dir.parent if var_dir.name.startswith("xdist-") else var_dir


def template_name(*, worker: str | None = None) -> str:
    """The template's database name (a file path on SQLite), the same in every process of one run."""
    if _is_sqlite():
        return str(_shared_var_dir() / f"test_promptctl{TEMPLATE_SUFFIX}.sqlite3")
    test_name = connection.settings_dict["TEST"]["NAME"] or f"test_{connection.settings_dict['NAME']}"
    if worker:  # pytest-django has already suffixed this worker's name: test_promptctl_gw0
        test_name = test_name.removesuffix(f"_{worker}")
    return test_name + TEMPLATE_SUFFIX


def _sqlite_files_remove(name: str) -> None:
    for path in (name, name + "-wal", name + "-shm"):
        Path(path).unlink(missing_ok=True)


def _template_migrate(name: str, *, verbosity: int) -> None:
    if _is_sqlite():
        _sqlite_files_remove(name)  # a stale write-ahead log must not be replayed into the new file
    worker_test_name = connection.settings_dict["TEST"]["NAME"]
    connection.settings_dict["TEST"]["NAME"] = name
    try:
        setup_databases(verbosity=verbosity, interactive=False, aliases={"default"}, serialized_aliases=set())
    finally:
        connection.settings_dict["TEST"]["NAME"] = worker_test_name
    connection.close()  # nothing may be connected to a template while it is copied


def _copy(template: str, target: str) -> None:
    if _is_sqlite():
        _sqlite_files_remove(target)
        source, copy = sqlite3.connect(template), sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            source.close()
            copy.close()
        return
    quote = connection.ops.quote_name
    with connection._nodb_cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {quote(target)} WITH (FORCE)")
        cursor.execute(f"CREATE DATABASE {quote(target)} TEMPLATE {quote(template)}")


def _use(name: str) -> None:
    connection.close()
    settings.DATABASES["default"]["NAME"] = name
    connection.settings_dict["NAME"] = name


def worker_database_create(*, run_id: str, worker: str, verbosity: int = 0) -> str:
    """This worker's test database, copied from the run's template (migrated here if no worker did yet)."""
    original = settings.DATABASES["default"]["NAME"]
    template = template_name(worker=worker)
    target = connection.settings_dict["TEST"]["NAME"]
    _shared_var_dir().mkdir(parents=True, exist_ok=True)
    with open(_shared_var_dir() / "xdist-template.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            lock.seek(0)
            stamp = f"{run_id} {template}"
            if lock.read().strip() != stamp:
                _template_migrate(template, verbosity=verbosity)
                lock.seek(0)
                lock.truncate()
                lock.write(stamp)
                lock.flush()
            _copy(template, target)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _use(target)
    return original


def worker_database_destroy(*, original_name: str, verbosity: int = 0) -> None:
    """Drop this worker's copy and point the settings back at ``original_name``."""
    connection.creation.destroy_test_db(old_database_name=original_name, verbosity=verbosity)


def sqlite_pristine_copy_take() -> str:
    """A copy of this process's freshly migrated SQLite test database, beside it (``<name>.pristine``).

    SQLite's flush deletes rows, and the record's tables refuse DELETE
    (``promptctl/migrations/0006_delete_guards.py``); a transactional test's
    database is restored from this copy instead (``sqlite_pristine_restore``).
    """
    name = str(connection.settings_dict["NAME"])
    copy_name = name + ".pristine"
    _sqlite_files_remove(copy_name)
    connection.ensure_connection()
    copy = sqlite3.connect(copy_name)
    try:
        connection.connection.backup(copy)
    finally:
        copy.close()
    return copy_name


def sqlite_pristine_restore(copy_name: str) -> None:
    """Write the pristine copy back over the test database, through the test's own connection.

    Afterwards the guarded tables are empty, so Django's flush (which runs next
    and deletes what the migrations made, as it always did) fires no delete trigger.
    """
    connection.ensure_connection()
    source = sqlite3.connect(copy_name)
    try:
        source.backup(connection.connection)
    finally:
        source.close()


def sqlite_pristine_copy_remove(copy_name: str) -> None:
    _sqlite_files_remove(copy_name)


def template_drop() -> None:
    """Remove the run's template (called once by the xdist controller after every worker finished)."""
    template = template_name()
    if _is_sqlite():
        _sqlite_files_remove(template)
        return
    quote = connection.ops.quote_name
    with connection._nodb_cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {quote(template)} WITH (FORCE)")
