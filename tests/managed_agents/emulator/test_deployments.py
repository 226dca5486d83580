"""Deployments and deployment runs in the emulator, driven through the real SDK (``client.beta.deployments``)."""

from __future__ import annotations

import datetime
import time
import zoneinfo

import anthropic
import pytest

from tests.managed_agents.emulator.support import (
    BILLING_TICKET_ABOUT_USAGE,
    all_events,
    http_json,
    user_message,
)

UPDATE_ROUTE = "POST /v1/deployments/{deployment_id}"
WEEKDAYS_AT_NINE = {"type": "cron", "expression": "0 9 * * 1-5", "timezone": "Europe/Berlin"}


def _deploy(client, agent, environment, *, agent_ref=None, **fields):
    return client.beta.deployments.create(
        agent=agent_ref if agent_ref is not None else {"type": "agent", "id": agent.id, "version": agent.version},
        environment_id=environment.id,
        name=fields.pop("name", "nightly-digest"),
        initial_events=fields.pop("initial_events", [user_message(BILLING_TICKET_ABOUT_USAGE)]),
        **fields,
    )


def _new_version(client, agent, system: str) -> int:
    current = client.beta.agents.retrieve(agent.id)
    return client.beta.agents.update(agent.id, version=current.version, system=system).version


def _wait_idle(client, session_id: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session = client.beta.sessions.retrieve(session_id)
        if session.status == "idle" and any(e.type == "agent.message" for e in all_events(client, session_id)):
            return session
        time.sleep(0.05)
    raise AssertionError(f"session {session_id} did not answer within {timeout} s")


# --- create, retrieve, list -------------------------------------------------------------------


def test_create_pins_the_given_version_and_returns_the_sdk_shape(client, agent, environment):
    _new_version(client, agent, "a second prompt")
    deployment = _deploy(
        client,
        agent,
        environment,
        description="Digest of yesterday's tickets",
        metadata={"team": "support"},
        schedule=WEEKDAYS_AT_NINE,
        vault_ids=["vlt_1"],
        resources=[{"type": "github_repository", "url": "https://github.com/o/r", "authorization_token": "secret"}],
    )
    assert deployment.id.startswith("depl_")
    assert deployment.type == "deployment"
    assert (deployment.agent.id, deployment.agent.version) == (agent.id, 1)
    assert deployment.status == "active" and deployment.paused_reason is None and deployment.archived_at is None
    assert deployment.environment_id == environment.id
    assert deployment.initial_events[0].type == "user.message"
    assert deployment.initial_events[0].content[0].text == BILLING_TICKET_ABOUT_USAGE
    assert deployment.metadata == {"team": "support"}
    assert deployment.vault_ids == ["vlt_1"]
    assert deployment.resources[0].url == "https://github.com/o/r"
    assert "authorization_token" not in deployment.resources[0].model_dump(), "write-only credentials are not echoed"
    assert deployment.budget is None
    assert deployment.schedule.expression == "0 9 * * 1-5" and deployment.schedule.timezone == "Europe/Berlin"
    assert deployment.schedule.last_run_at is None

    again = client.beta.deployments.retrieve(deployment.id)
    assert again.model_dump() == {**deployment.model_dump(), "schedule": again.schedule.model_dump()}


def test_schedule_lists_the_next_five_local_fire_times(client, agent, environment):
    deployment = _deploy(client, agent, environment, schedule=WEEKDAYS_AT_NINE)
    upcoming = deployment.schedule.upcoming_runs_at
    assert len(upcoming) == 5
    berlin = [moment.astimezone(zoneinfo.ZoneInfo("Europe/Berlin")) for moment in upcoming]
    assert all((local.hour, local.minute) == (9, 0) and local.isoweekday() <= 5 for local in berlin)
    assert upcoming == sorted(upcoming) and upcoming[0] > datetime.datetime.now(datetime.UTC)


def test_a_bare_agent_id_pins_the_latest_version_at_write_time(client, agent, environment):
    """The SDK documents a bare id as "pins the latest version": later agent versions do not move it."""
    second = _new_version(client, agent, "second")
    deployment = _deploy(client, agent, environment, agent_ref=agent.id)
    assert deployment.agent.version == second
    _new_version(client, agent, "third")
    assert client.beta.deployments.retrieve(deployment.id).agent.version == second
    run = client.beta.deployments.run(deployment.id)
    assert run.agent.version == second
    assert client.beta.sessions.retrieve(run.session_id).agent.version == second


def test_the_float_knob_makes_a_bare_agent_id_follow_the_latest_version(server, client, agent, environment):
    server.configure(deployment_latest="float")
    floating = _deploy(client, agent, environment, agent_ref=agent.id)
    pinned = _deploy(client, agent, environment, name="pinned")
    assert floating.agent.version == pinned.agent.version == 1
    _new_version(client, agent, "v2")
    third = _new_version(client, agent, "v3")
    assert client.beta.deployments.retrieve(floating.id).agent.version == third
    assert client.beta.deployments.retrieve(pinned.id).agent.version == 1
    run = client.beta.deployments.run(floating.id)
    assert run.agent.version == third
    assert client.beta.sessions.retrieve(run.session_id).agent.version == third


def test_list_pages_newest_first_and_filters(client, agent, environment):
    other = client.beta.agents.create(name="other", model="claude-sonnet-4-5")
    made = [_deploy(client, agent, environment, name=f"d{index}") for index in range(5)]
    elsewhere = _deploy(client, other, environment, name="elsewhere")

    first = client.beta.deployments.list(limit=2)
    assert [d.id for d in first.data] == [elsewhere.id, made[4].id]
    every = [d.id for d in client.beta.deployments.list(limit=2)]
    assert every == [elsewhere.id] + [d.id for d in reversed(made)]

    assert {d.id for d in client.beta.deployments.list(agent_id=other.id)} == {elsewhere.id}
    client.beta.deployments.pause(made[0].id)
    client.beta.deployments.archive(made[1].id)
    assert [d.id for d in client.beta.deployments.list(status="paused")] == [made[0].id]
    assert made[1].id not in {d.id for d in client.beta.deployments.list(status="active")}
    assert made[1].id not in {d.id for d in client.beta.deployments.list()}
    assert made[1].id in {d.id for d in client.beta.deployments.list(include_archived=True)}
    with pytest.raises(anthropic.BadRequestError, match="cannot be combined"):
        client.beta.deployments.list(status="active", include_archived=True)


def test_create_refusals_name_the_field_in_the_documented_error_body(server, client, agent, environment):
    cases = [
        ({"initial_events": []}, "initial_events"),
        ({"schedule": {"type": "cron", "expression": "0 9 * *", "timezone": "UTC"}}, "5"),
        ({"schedule": {"type": "cron", "expression": "61 9 * * *", "timezone": "UTC"}}, "out of range"),
        ({"schedule": {"type": "cron", "expression": "@daily", "timezone": "UTC"}}, "fields"),
        ({"schedule": {"type": "cron", "expression": "0 9 * * *", "timezone": "Mars/Olympus"}}, "IANA"),
        ({"agent_ref": {"type": "agent", "id": agent.id, "version": 0}}, "at least 1"),
        ({"initial_events": [{"type": "user.tool_confirmation"}]}, "not accepted"),
    ]
    for fields, expected in cases:
        with pytest.raises(anthropic.BadRequestError) as refused:
            _deploy(client, agent, environment, **fields)
        assert refused.value.body["error"]["type"] == "invalid_request_error"
        assert expected in refused.value.body["error"]["message"], refused.value.body
        assert refused.value.body["request_id"] == refused.value.response.headers["request-id"]
    with pytest.raises(anthropic.NotFoundError):
        _deploy(client, agent, environment, agent_ref={"type": "agent", "id": agent.id, "version": 9})
    client.beta.agents.archive(agent.id)
    with pytest.raises(anthropic.BadRequestError, match="archived"):
        _deploy(client, agent, environment)
    assert server.stats()["deployments"]["total"] == 0


# --- update, pause, archive -------------------------------------------------------------------


def test_update_moves_the_pin_and_keeps_what_it_omits(server, client, agent, environment):
    second = _new_version(client, agent, "second")
    deployment = _deploy(client, agent, environment, description="d", metadata={"a": "1", "b": "2"})
    moved = client.beta.deployments.update(
        deployment.id, agent={"type": "agent", "id": agent.id, "version": second}, metadata={"a": None, "c": "3"}
    )
    assert moved.agent.version == second
    assert moved.metadata == {"b": "2", "c": "3"}
    assert (moved.name, moved.description, moved.environment_id) == ("nightly-digest", "d", environment.id)
    assert moved.initial_events == deployment.initial_events
    assert moved.updated_at > deployment.updated_at

    scheduled = client.beta.deployments.update(deployment.id, schedule=WEEKDAYS_AT_NINE, description=None)
    assert scheduled.schedule.expression == "0 9 * * 1-5" and scheduled.description is None
    assert client.beta.deployments.update(deployment.id, schedule=None).schedule is None

    back = client.beta.deployments.update(deployment.id, agent={"type": "agent", "id": agent.id, "version": 1})
    assert back.agent.version == 1
    third = _new_version(client, agent, "third")
    assert client.beta.deployments.update(deployment.id, agent=agent.id).agent.version == third, "re-pins to latest"
    assert server.stats()["deployments"]["updates"] == 5


def test_update_refusals_change_nothing(server, client, agent, environment):
    deployment = _deploy(client, agent, environment)
    for fields in ({"name": ""}, {"initial_events": []}, {"schedule": {"type": "cron", "expression": "x"}}):
        with pytest.raises(anthropic.BadRequestError):
            client.beta.deployments.update(deployment.id, metadata={"changed": "yes"}, **fields)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.deployments.update(deployment.id, agent={"type": "agent", "id": agent.id, "version": 7})
    with pytest.raises(anthropic.NotFoundError):
        client.beta.deployments.update("depl_missing", name="x")
    unchanged = client.beta.deployments.retrieve(deployment.id)
    assert unchanged.metadata == {} and unchanged.updated_at == deployment.updated_at
    assert server.stats()["deployments"]["updates"] == 0


def test_pause_unpause_and_archive(client, agent, environment):
    deployment = _deploy(client, agent, environment)
    paused = client.beta.deployments.pause(deployment.id)
    assert paused.status == "paused" and paused.paused_reason.type == "manual"
    assert client.beta.deployments.pause(deployment.id).status == "paused", "pausing twice is harmless"
    active = client.beta.deployments.unpause(deployment.id)
    assert active.status == "active" and active.paused_reason is None

    client.beta.deployments.pause(deployment.id)
    archived = client.beta.deployments.archive(deployment.id)
    assert archived.archived_at is not None
    assert archived.status == "active" and archived.paused_reason is None, "archived reports active, as documented"
    assert client.beta.deployments.archive(deployment.id).archived_at == archived.archived_at
    for refused in (
        lambda: client.beta.deployments.update(deployment.id, name="again"),
        lambda: client.beta.deployments.pause(deployment.id),
        lambda: client.beta.deployments.unpause(deployment.id),
        lambda: client.beta.deployments.run(deployment.id),
    ):
        with pytest.raises(anthropic.BadRequestError, match="archived"):
            refused()
    assert client.beta.deployments.retrieve(deployment.id).name == "nightly-digest"


# --- runs -------------------------------------------------------------------------------------


def test_run_creates_a_pinned_session_and_sends_the_initial_events(client, agent, environment):
    _new_version(client, agent, "a prompt that is not the pinned one")
    deployment = _deploy(
        client,
        agent,
        environment,
        initial_events=[
            user_message(BILLING_TICKET_ABOUT_USAGE),
            {"type": "user.define_outcome", "description": "a team", "rubric": {"type": "text", "content": "ok"}},
        ],
    )
    client.beta.deployments.pause(deployment.id)
    run = client.beta.deployments.run(deployment.id)  # manual runs are allowed while paused
    assert run.id.startswith("drun_") and run.type == "deployment_run"
    assert run.deployment_id == deployment.id and run.error is None
    assert (run.agent.id, run.agent.version) == (agent.id, 1)
    assert run.trigger_context.type == "manual"

    session = _wait_idle(client, run.session_id)
    assert session.deployment_id == deployment.id
    assert session.agent.version == 1
    types = [event.type for event in all_events(client, run.session_id)]
    assert types[0] == "user.message" and "user.define_outcome" in types and "agent.message" in types
    assert [s.id for s in client.beta.sessions.list(deployment_id=deployment.id)] == [run.session_id]

    assert client.beta.deployment_runs.retrieve(run.id).model_dump() == run.model_dump()
    second = client.beta.deployments.run(deployment.id)
    listed = client.beta.deployment_runs.list(deployment_id=deployment.id)
    assert [r.id for r in listed] == [second.id, run.id]
    assert list(client.beta.deployment_runs.list(deployment_id="depl_unknown")) == []
    assert list(client.beta.deployment_runs.list(has_error=True)) == []
    assert len(list(client.beta.deployment_runs.list(trigger_type="manual", limit=500))) == 2
    with pytest.raises(anthropic.NotFoundError):
        client.beta.deployment_runs.retrieve("drun_missing")


def test_a_run_that_cannot_create_a_session_is_recorded_with_its_error(client, agent, environment):
    deployment = _deploy(client, agent, environment)
    client.beta.agents.archive(agent.id)
    run = client.beta.deployments.run(deployment.id)
    assert run.session_id is None
    assert run.error.type == "agent_archived_error" and agent.id in run.error.message
    assert [r.id for r in client.beta.deployment_runs.list(has_error=True)] == [run.id]
    assert list(client.beta.sessions.list()) == []


def test_a_scheduled_fire_records_a_schedule_run_and_a_failed_one_pauses(server, client, agent, environment):
    deployment = _deploy(client, agent, environment, schedule=WEEKDAYS_AT_NINE)
    fired = server.fire_deployment(deployment.id)
    assert fired["fired"] is True and fired["run"]["trigger_context"]["type"] == "schedule"
    run = client.beta.deployment_runs.retrieve(fired["run"]["id"])
    assert run.trigger_context.scheduled_at == deployment.schedule.upcoming_runs_at[0]
    assert client.beta.deployments.retrieve(deployment.id).schedule.last_run_at == run.created_at

    client.beta.deployments.pause(deployment.id)
    status, suppressed, _ = http_json(server, "POST", "/_emulator/deployments/fire", {"deployment_id": deployment.id})
    assert status == 200 and suppressed == {"fired": False, "reason": "paused", "run": None}
    client.beta.deployments.unpause(deployment.id)

    client.beta.environments.archive(environment.id)
    failed = server.fire_deployment(deployment.id)["run"]
    assert failed["error"]["type"] == "environment_archived_error"
    after = client.beta.deployments.retrieve(deployment.id)
    assert after.status == "paused"
    assert after.paused_reason.type == "error" and after.paused_reason.error.type == "environment_archived_error"
    assert server.stats()["deployments"]["runs"] == 2


# --- faults -----------------------------------------------------------------------------------


def test_fault_routes_can_fail_deployment_updates_before_they_apply(server, client, agent, environment):
    second = _new_version(client, agent, "second")
    first, other = _deploy(client, agent, environment), _deploy(client, agent, environment, name="other")
    client.beta.deployments.update(first.id, agent={"type": "agent", "id": agent.id, "version": second})
    server.configure(fault_500=1.0, fault_routes=UPDATE_ROUTE)
    with pytest.raises(anthropic.InternalServerError, match=r"POST /v1/deployments/\{deployment_id\}"):
        client.beta.deployments.update(other.id, agent={"type": "agent", "id": agent.id, "version": second})
    assert client.beta.deployments.retrieve(other.id).agent.version == 1, "a fault before the work changes nothing"
    assert client.beta.deployments.retrieve(first.id).agent.version == second
    stats = server.stats()
    assert stats["deployments"]["updates"] == 1
    assert stats["requests"][UPDATE_ROUTE] == 2 and stats["faults"]["fault_500"] == 1


def test_a_lost_update_response_still_moved_the_deployment(server, client, agent, environment):
    second = _new_version(client, agent, "second")
    deployment = _deploy(client, agent, environment)
    server.configure(fault_lost=1.0, lost_routes=UPDATE_ROUTE)
    with pytest.raises(anthropic.InternalServerError, match="response was lost"):
        client.beta.deployments.update(deployment.id, agent={"type": "agent", "id": agent.id, "version": second})
    server.configure(fault_lost=0.0)
    assert client.beta.deployments.retrieve(deployment.id).agent.version == second
    assert server.stats()["deployments"]["updates"] == 1


def test_unknown_fault_route_names_are_refused(server):
    with pytest.raises(ValueError, match="unknown route"):
        server.configure(fault_routes="POST /v1/deployments/{id}")
    assert server.configure(fault_routes="POST /v1/deployments/{deployment_id}/run")["fault_routes"].endswith("/run")
