"""The emulator's sessions and events (polling, streaming, interrupts) and pagination, through the real SDK."""

from __future__ import annotations

import json

import anthropic
import pytest

from promptctl.tutorial import V1_PROMPT, V2_PROMPT
from tests.managed_agents.emulator.support import (
    BILLING_TICKET_ABOUT_USAGE,
    agent_reply,
    all_events,
    ask_by_stream,
    user_message,
    wait_for_idle_by_polling,
)

# --- sessions ----------------------------------------------------------------------------------------


def test_pinned_session_keeps_its_version_and_bare_id_means_latest(client, agent, environment):
    client.beta.agents.update(agent.id, version=1, system=V2_PROMPT)
    pinned = client.beta.sessions.create(
        agent={"type": "agent", "id": agent.id, "version": 1}, environment_id=environment.id
    )
    latest = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    assert (pinned.agent.version, latest.agent.version) == (1, 2)
    assert pinned.agent.system == V1_PROMPT

    pinned_verdict = json.loads(agent_reply(ask_by_stream(client, pinned.id, BILLING_TICKET_ABOUT_USAGE)))
    latest_verdict = json.loads(agent_reply(ask_by_stream(client, latest.id, BILLING_TICKET_ABOUT_USAGE)))
    assert pinned_verdict["team"] == "billing"
    assert latest_verdict["team"] == "api-platform"


def test_session_create_refusals(client, agent, environment):
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.create(agent="agent_missing", environment_id=environment.id)
    with pytest.raises(anthropic.NotFoundError, match="no version 9"):
        client.beta.sessions.create(
            agent={"type": "agent", "id": agent.id, "version": 9}, environment_id=environment.id
        )
    client.beta.environments.archive(environment.id)
    with pytest.raises(anthropic.BadRequestError, match="archived"):
        client.beta.sessions.create(agent=agent.id, environment_id=environment.id)


def test_session_metadata_retrieve_list_filters(client, agent, environment):
    tagged = client.beta.sessions.create(
        agent=agent.id, environment_id=environment.id, metadata={"run": "r1", "ticket": "T-1", "attempt": "1"}
    )
    client.beta.agents.update(agent.id, system=V2_PROMPT)
    other = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)

    assert client.beta.sessions.retrieve(tagged.id).metadata == {"run": "r1", "ticket": "T-1", "attempt": "1"}
    assert [s.id for s in client.beta.sessions.list()] == [other.id, tagged.id]  # newest first
    assert [s.id for s in client.beta.sessions.list(order="asc")] == [tagged.id, other.id]
    assert [s.id for s in client.beta.sessions.list(agent_id=agent.id, agent_version=1)] == [tagged.id]
    assert [s.id for s in client.beta.sessions.list(statuses=["running"])] == []
    assert len(list(client.beta.sessions.list(statuses=["idle", "running"]))) == 2


def test_tutorial_polling_loop(client, agent, environment):
    session = client.beta.sessions.create(
        agent={"type": "agent", "id": agent.id, "version": 1}, environment_id=environment.id
    )
    client.beta.sessions.events.send(session.id, events=[user_message(BILLING_TICKET_ABOUT_USAGE)])

    events = wait_for_idle_by_polling(client, session.id)

    assert [event.type for event in events] == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.status_idle",
    ]
    assert events[-1].stop_reason.type == "end_turn"
    assert json.loads(agent_reply(events))["team"] == "billing"
    assert agent_reply(events).count("\n") == 0
    assert len({event.id for event in events}) == len(events)
    finished = client.beta.sessions.retrieve(session.id)
    assert finished.status == "idle"
    assert finished.usage.output_tokens > 0
    assert events[4].model_usage.output_tokens > 0


def test_streaming_loop_and_no_replay(client, agent, environment):
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    client.beta.sessions.events.send(
        session.id, events=[user_message("Subject: Password reset\n\nThe reset email never comes.")]
    )
    first_turn = wait_for_idle_by_polling(client, session.id, interval=0.1)

    streamed = ask_by_stream(client, session.id, "Subject: Chart broken\n\nThe usage chart widget is blank.")

    assert [event.type for event in streamed] == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.status_idle",
    ]
    assert not {event.id for event in first_turn} & {event.id for event in streamed}
    assert json.loads(agent_reply(streamed))["team"] == "dashboard"
    assert json.loads(agent_reply(first_turn))["team"] == "auth"
    history_ids = [event.id for event in all_events(client, session.id)]
    assert history_ids[-len(streamed) :] == [event.id for event in streamed]


def test_messages_sent_while_running_are_answered_in_order(server, client, agent, environment):
    server.configure(latency=0.2)
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    client.beta.sessions.events.send(
        session.id,
        events=[
            user_message("Subject: SSO\n\nSAML login fails."),
            user_message("Subject: Export\n\nCSV export button broken."),
        ],
    )
    events = wait_for_idle_by_polling(client, session.id, interval=0.2)
    replies = [json.loads(event.content[0].text)["team"] for event in events if event.type == "agent.message"]
    assert replies == ["auth", "dashboard"]
    assert [event.type for event in events].count("session.status_idle") == 1


def test_initial_events_start_the_session(client, agent, environment):
    session = client.beta.sessions.create(
        agent=agent.id,
        environment_id=environment.id,
        initial_events=[user_message("Subject: Webhook\n\nWebhook retries fail.")],
    )
    events = wait_for_idle_by_polling(client, session.id, interval=0.1)
    assert json.loads(agent_reply(events))["team"] == "api-platform"


def test_archive_is_refused_while_running_and_works_after_interrupt(server, client, agent, environment):
    server.configure(latency=30)
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    client.beta.sessions.events.send(session.id, events=[user_message("Subject: Refund\n\nRefund please.")])
    assert client.beta.sessions.retrieve(session.id).status == "running"

    with pytest.raises(anthropic.BadRequestError) as refusal:
        client.beta.sessions.archive(session.id)
    assert refusal.value.status_code == 400
    assert "user.interrupt" in refusal.value.api_message

    sent = client.beta.sessions.events.send(session.id, events=[{"type": "user.interrupt"}])
    assert sent.data[0].type == "user.interrupt"
    events = all_events(client, session.id)
    assert events[-1].type == "session.status_idle"
    assert "agent.message" not in [event.type for event in events]
    archived = client.beta.sessions.archive(session.id)
    assert archived.archived_at is not None and archived.status == "idle"
    with pytest.raises(anthropic.BadRequestError, match="archived"):
        client.beta.sessions.events.send(session.id, events=[user_message("more")])


def test_delete_session_ends_its_stream(client, agent, environment):
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    with client.beta.sessions.events.stream(session.id, timeout=10) as stream:
        deleted = client.beta.sessions.delete(session.id)
        received = [event.type for event in stream]
    assert (deleted.id, deleted.type) == (session.id, "session_deleted")
    assert received == ["session.deleted"]
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.retrieve(session.id)


# --- pagination ----------------------------------------------------------------------------------------


def test_pagination_across_pages(client, agent, environment):
    created = [client.beta.sessions.create(agent=agent.id, environment_id=environment.id).id for _ in range(25)]

    first_page = client.beta.sessions.list(limit=10)
    assert len(first_page.data) == 10 and first_page.next_page and first_page.prev_page is None
    second_page = first_page.get_next_page()
    assert second_page.prev_page is not None
    assert not {s.id for s in first_page.data} & {s.id for s in second_page.data}
    walked = [s.id for s in client.beta.sessions.list(limit=10)]
    assert walked == list(reversed(created))

    session_id = created[0]
    client.beta.sessions.events.send(session_id, events=[user_message("Subject: Invoice\n\nWrong invoice.")])
    wait_for_idle_by_polling(client, session_id, interval=0.1)
    event_page = client.beta.sessions.events.list(session_id, limit=2)
    assert event_page.has_next_page()
    assert len([event.id for event in client.beta.sessions.events.list(session_id, limit=2)]) == 6
    newest_first = client.beta.sessions.events.list(session_id, order="desc", limit=1).data
    assert newest_first[0].type == "session.status_idle"
    assert [e.type for e in client.beta.sessions.events.list(session_id, types=["agent.message"])] == ["agent.message"]

    for _ in range(3):
        client.beta.agents.update(agent.id, system=V2_PROMPT)
    versions = [version.version for version in client.beta.agents.versions.list(agent.id, limit=3)]
    assert versions == [4, 3, 2, 1]


def test_foreign_page_cursor_is_refused(client):
    with pytest.raises(anthropic.BadRequestError, match="cursor"):
        client.beta.sessions.list(page="not-a-cursor")
