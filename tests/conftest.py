"""Shared fixtures: the emulator over loopback HTTP, the tutorial's people and agent, Chromium, server requirements.

Tests that need PostgreSQL or Redis are marked ``postgres`` / ``redis``. Locally
they skip with the reason printed when the server is not configured; in CI
(``PROMPTCTL_REQUIRE_SERVERS=1``) a missing server is a failure, never a skip.

Fixtures are shared through ``conftest.py`` files only; plain helpers live in
``*_support.py`` modules that tests import.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.browser_support import CHROMIUM_ARGS, CHROMIUM_PATH, DEFAULT_TIMEOUT_MS
from tests.change_control_support import PASSWORD, V1
from tests.db_roles_support import connected_as

REQUIRE_SERVERS = os.environ.get("PROMPTCTL_REQUIRE_SERVERS") == "1"


def _missing_server(marker_name: str) -> str | None:
    if marker_name == "postgres":
        engine = django_settings.DATABASES["default"]["ENGINE"]
        if "postgresql" not in engine:
            return "needs PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/promptctl"
    if marker_name == "redis":
        if not django_settings.CELERY_BROKER_URL.startswith("redis://"):
            return "needs Redis: set CELERY_BROKER_URL=redis://127.0.0.1:6379/15"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker_name in ("postgres", "redis"):
        if item.get_closest_marker(marker_name) is None:
            continue
        reason = _missing_server(marker_name)
        if reason is None:
            continue
        if REQUIRE_SERVERS:
            pytest.fail(f"CI requires this server but it is not configured: {reason}")
        pytest.skip(reason)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first, so that under xdist (``--dist load --maxschedchunk 1``) none starts near the end.

    A stable sort: otherwise pytest-django's order stands. Under xdist each
    worker still runs its share in that order; a test that follows a
    transactional test's flush finds the migrations' groups gone, which
    ``roles_ensure`` recreates whenever people are made.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# --- test databases under pytest-xdist (tests.database_support) --------------------------------

if os.environ.get("PYTEST_XDIST_WORKER"):

    @pytest.fixture(scope="session")
    def django_db_setup(request, django_test_environment, django_db_blocker, django_db_modify_db_settings):
        """This worker's test database, copied from one template migrated once per run."""
        from tests import database_support

        verbosity = request.config.option.verbose
        workerinput = request.config.workerinput
        with django_db_blocker.unblock():
            original_name = database_support.worker_database_create(
                run_id=workerinput["testrunuid"], worker=workerinput["workerid"], verbosity=verbosity
            )
        yield
        with django_db_blocker.unblock():
            database_support.worker_database_destroy(original_name=original_name, verbosity=verbosity)


def _transactional(request: pytest.FixtureRequest) -> bool:
    """Whether pytest-django flushes the database after this test (its own rule, in ``_django_db_helper``)."""
    marker = request.node.get_closest_marker("django_db")
    if marker and (marker.kwargs.get("transaction") or marker.kwargs.get("reset_sequences")):
        return True
    names = set(request.fixturenames)
    return bool(names & {"transactional_db", "live_server", "django_db_reset_sequences"})


@pytest.fixture(scope="session")
def _sqlite_pristine_copy(django_db_setup, django_db_blocker):
    """SQLite: a copy of this process's test database, taken before any transactional test wrote to it."""
    from tests import database_support

    with django_db_blocker.unblock():
        copy_name = database_support.sqlite_pristine_copy_take()
    yield copy_name
    database_support.sqlite_pristine_copy_remove(copy_name)


@pytest.fixture(autouse=True)
def _sqlite_restored_before_flush(request, django_db_blocker):
    """SQLite: restore a transactional test's database from the pristine copy before Django's flush.

    The record's tables refuse DELETE on SQLite (migration 0006), and the flush
    deletes rows. Requesting ``_django_db_helper`` here makes it tear down (and
    flush) after this fixture has restored the copy.
    """
    if "sqlite" not in django_settings.DATABASES["default"]["ENGINE"] or not _transactional(request):
        yield
        return
    request.getfixturevalue("_django_db_helper")
    copy_name = request.getfixturevalue("_sqlite_pristine_copy")
    yield
    from tests import database_support

    with django_db_blocker.unblock():
        database_support.sqlite_pristine_restore(copy_name)


@pytest.fixture(autouse=True)
def _audit_checkpoints_per_test(settings, tmp_path, monkeypatch):
    """Each test gets its own audit checkpoint file, as it gets its own empty database.

    Checkpoints outlive a database on purpose (promptctl/audit/checkpoints.py):
    one shared file would make every test's fresh database read as a truncated
    chain. Child processes the test starts inherit the file through the environment.
    """
    path = str(tmp_path / "audit-checkpoints.jsonl")
    settings.PROMPTCTL_AUDIT_CHECKPOINT_FILE = path
    monkeypatch.setenv("PROMPTCTL_AUDIT_CHECKPOINT_FILE", path)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The xdist controller drops the run's template database once every worker has finished."""
    if not session.config.pluginmanager.has_plugin("dsession"):
        return
    from pytest_django.plugin import blocking_manager_key

    from tests import database_support

    with session.config.stash[blocking_manager_key].unblock():
        database_support.template_drop()


@pytest.fixture(autouse=True)
def _database_threads_stopped():
    """No test leaves the API's database threads (promptctl.dbsteps) running with open connections.

    They start when the application is driven from an event loop with no
    synchronous caller waiting (schemathesis, for one); left open, their
    connections would keep PostgreSQL from dropping the test database.
    """
    yield
    from promptctl import dbsteps

    dbsteps.threads_stop()


# --- the emulator ---------------------------------------------------------------------------


# The emulator "thinks" this long before each reply unless a test sets its own latency. Its
# default (0.05 s) is for people watching; here a reply still comes later, from the scheduler
# thread, as it does from the live API, and an eval run of 40 sessions waits 0.4 s instead of 2 s.
EMULATOR_TEST_LATENCY = 0.01


@pytest.fixture(scope="session")
def emulator_server():
    """One emulator per test session (per xdist worker), on a free loopback port."""
    from managed_agents.emulator.server import EmulatorServer

    server = EmulatorServer(host="127.0.0.1", port=0, latency=EMULATOR_TEST_LATENCY)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def emulator(emulator_server, settings):
    """The emulator with fresh state and default knobs; promptctl's gateway points at it.

    The gateway rebuilds its SDK client whenever the endpoint settings change, and
    keeps it while they stay the same: tests on this worker's one emulator share it
    (a new client costs about 45 ms of TLS set-up, even for plain HTTP).
    """
    emulator_server.reset()
    settings.ANTHROPIC_BASE_URL = emulator_server.base_url
    settings.ANTHROPIC_API_KEY = "emulator-accepts-any-key"
    yield emulator_server


@pytest.fixture
def workers(transactional_db, emulator):
    """Real Celery worker processes (``tests.evals.support.Workers``) against this test's emulator and broker."""
    from tests.evals.support import Workers

    pool = Workers(emulator_url=emulator.base_url)
    pool.purge()
    yield pool
    pool.stop_all()
    pool.purge()


@pytest.fixture
def emulator_proxy(emulator, settings):
    """A loopback proxy in front of the emulator that can hold requests and rewrite agents; the gateway uses it."""
    from tests.proxy_support import EmulatorProxy

    proxy = EmulatorProxy(emulator.base_url)
    proxy.start()
    settings.ANTHROPIC_BASE_URL = proxy.base_url
    yield proxy
    proxy.stop()


# --- the tutorial's people and agent (change control and evals) --------------------------------


@pytest.fixture
def requester(db):
    from promptctl import services

    return services.user_create(username="rita", role="requester", password=PASSWORD)


@pytest.fixture
def reviewer(db):
    from promptctl import services

    return services.user_create(username="victor", role="reviewer", password=PASSWORD)


@pytest.fixture
def second_reviewer(db):
    from promptctl import services

    return services.user_create(username="wendy", role="reviewer", password=PASSWORD)


@pytest.fixture
def agent(emulator, requester):
    """The tutorial agent at v1, created through promptctl on the emulator."""
    from promptctl import services

    return services.agent_create(name="ticket-triage", model="claude-sonnet-4-6", system_prompt=V1, actor=requester)


# --- Chromium (tests marked ``browser``; tests.browser_support says how) --------------------------


@pytest.fixture
def chromium(monkeypatch) -> Iterator[object]:
    """A headless Chromium browser, started for one test (so no event loop outlives it)."""
    if not Path(CHROMIUM_PATH).exists():
        reason = f"needs Debian's chromium at {CHROMIUM_PATH} (apt-get install chromium)"
        if REQUIRE_SERVERS:
            pytest.fail(f"CI requires the browser but it is missing: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
            # ORM calls made while Playwright's loop ran used a connection local to that
            # context; close it here, or it outlives the test and blocks dropping the test database.
            from django.db import connections

            connections.close_all()


@pytest.fixture
def browser_page(chromium, live_server):
    """A factory of fresh pages (one browser context each, so each person has their own cookies)."""
    contexts = []

    def new_page():
        context = chromium.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield new_page
    for context in contexts:
        context.close()


# --- a PostgreSQL runtime role (``promptctl db roles``) on this test database -------------------


@pytest.fixture
def runtime_role(transactional_db):
    """A runtime role made by ``promptctl db roles`` on this test database; a unique name, dropped after.

    Transactional: the role, its grants and the rows the test makes are
    committed, so a second login as the role sees them.
    """
    from django.core.management import call_command
    from django.db import connections

    name = f"promptctl_rt_{uuid.uuid4().hex[:12]}"
    call_command("promptctl", "db", "roles", "--runtime-role", name, stdout=io.StringIO())
    yield name
    owner = connections["default"]
    with owner.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()",
            [name],
        )
        cursor.execute(f'DROP OWNED BY "{name}"')  # its grants on this database
        cursor.execute(f'DROP ROLE "{name}"')


@pytest.fixture
def runtime_login(runtime_role):
    """A connection that logged in as the runtime role (autocommit: each statement stands alone)."""
    from promptctl.services.database_roles import login_as

    login = login_as(runtime_role)
    yield login
    login.close()


@pytest.fixture
def app_as_runtime_role(runtime_role):
    """Django's default connection logs in as the runtime role for the test, then as the owner again."""
    with connected_as(runtime_role):
        yield runtime_role
