"""Database steps of async views (promptctl.dbsteps): long-lived threads that keep their connections."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.db import OperationalError, connection, connections

from promptctl import dbsteps
from promptctl.middleware import request_id_bind, request_id_current
from promptctl.models import Agent, AgentVersion


@pytest.fixture
def database_threads(settings):
    settings.PROMPTCTL_DB_THREADS = 2
    dbsteps.threads_stop()
    yield
    dbsteps.threads_stop()


def _where() -> dict:
    """Which thread ran the step, on which database connection, seeing which request id."""
    get_user_model().objects.exists()  # a query, so the thread's connection is open
    return {
        "thread": threading.current_thread().name,
        "connection": id(connection.connection),
        "request_id": request_id_current(),
    }


def _steps(count: int) -> list[dict]:
    async def run() -> list[dict]:
        with request_id_bind("req-42"):
            return [await dbsteps.db_step(_where) for _ in range(count)]

    return asyncio.run(run())


def test_steps_run_on_the_database_threads_and_reuse_their_connections(transactional_db, database_threads):
    seen = _steps(12) + _steps(12)  # two event loops, as two requests would be
    assert {step["thread"] for step in seen} <= {"promptctl-db-0", "promptctl-db-1"}
    assert len({step["connection"] for step in seen}) <= 2, "each thread keeps one connection across steps"
    assert {step["request_id"] for step in seen} == {"req-42"}, "the caller's context variables reach the step"


def test_stopping_the_threads_closes_their_connections(transactional_db, database_threads):
    _steps(4)
    threads = [thread for thread in threading.enumerate() if thread.name.startswith("promptctl-db-")]
    assert len(threads) == 2
    dbsteps.threads_stop()
    assert not any(thread.is_alive() for thread in threads)


def test_with_a_synchronous_caller_waiting_the_step_runs_in_its_thread(db, database_threads):
    """The test client and management commands wait on the loop: the step sees their transaction."""
    user = get_user_model().objects.create(username="only-in-this-transaction")

    async def read() -> tuple[str, bool]:
        return await dbsteps.db_step(
            lambda: (threading.current_thread().name, get_user_model().objects.filter(pk=user.pk).exists())
        )

    thread_name, visible = async_to_sync(read)()
    assert thread_name == threading.current_thread().name
    assert visible


def test_an_error_in_a_step_reaches_the_caller(transactional_db, database_threads):
    def refuse():
        raise ValueError("no such ticket")

    with pytest.raises(ValueError, match="no such ticket"):
        asyncio.run(dbsteps.db_step(refuse))
    assert _steps(1)[0]["thread"].startswith("promptctl-db-"), "the thread survives a failed step"


@pytest.mark.postgres
def test_a_connection_the_server_dropped_is_replaced_on_the_next_step(transactional_db, database_threads, settings):
    """The server ends a thread's backend (a restart would): one step fails, the next one reconnects."""
    settings.PROMPTCTL_DB_THREADS = 1
    dbsteps.threads_stop()

    def backend_pid() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]

    def step(function):
        return asyncio.run(dbsteps.db_step(function))

    first = step(backend_pid)
    assert step(backend_pid) == first, "the connection is kept between steps"
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [first])
    with pytest.raises(OperationalError):
        step(backend_pid)
    replaced = step(backend_pid)
    assert replaced != first
    assert step(backend_pid) == replaced


def test_a_compiled_read_runs_its_sql_with_each_calls_values(db):
    from promptctl.services import user_create

    owner = user_create(username="owner", role="requester")
    for name in ("alpha", "beta"):
        Agent.objects.create(
            name=name,
            remote_id=f"agent_{name}",
            environment_id="env_1",
            model="m",
            latest_version_number=1,
            created_by=owner,
        )
    read = dbsteps.CompiledRead(lambda name: Agent.objects.filter(name=name), fields=("name", "remote_id"))
    assert read.first(name="alpha") == {"name": "alpha", "remote_id": "agent_alpha"}
    assert read.first(name="beta") == {"name": "beta", "remote_id": "agent_beta"}
    assert read.first(name="gamma") is None


@pytest.mark.parametrize(
    ("build", "fields", "refusal"),
    [
        (lambda name: Agent.objects.filter(name__contains=name), ("name",), "must be used once, as given"),
        (lambda name: AgentVersion.objects.filter(agent__name=name), ("config",), "converts"),
    ],
    ids=["rewritten parameter", "converted field"],
)
def test_a_compiled_read_refuses_what_raw_sql_would_get_wrong(db, build, fields, refusal):
    with pytest.raises(ValueError, match=refusal):
        dbsteps.CompiledRead(build, fields=fields).first(name="alpha")
