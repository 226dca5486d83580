"""The lost-response fault: the request is carried out, then its answer is lost (a 500, or no answer at all)."""

from __future__ import annotations

import anthropic
import pytest

from tests.managed_agents.emulator.support import all_events, http_json, make_client, user_message

CREATE = "POST /v1/sessions"
SEND = "POST /v1/sessions/{session_id}/events"


def test_a_closed_connection_loses_the_answer_but_not_the_work(server, client, agent, environment):
    server.configure(fault_lost=1.0, lost_routes=CREATE, lost_mode="close")
    with pytest.raises(anthropic.APIConnectionError):
        client.beta.sessions.create(agent=agent.id, environment_id=environment.id, metadata={"marker": "m1"})
    landed = list(client.beta.sessions.list(agent_id=agent.id))
    assert [session.metadata for session in landed] == [{"marker": "m1"}]
    assert server.stats()["sessions"]["created"] == 1 and server.stats()["faults"]["fault_lost"] == 1


def test_lost_routes_limit_the_fault_to_the_routes_named(server, client, agent, environment):
    server.configure(fault_lost=1.0, lost_routes=SEND)
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)  # not a named route
    with pytest.raises(anthropic.InternalServerError) as lost:
        client.beta.sessions.events.send(session.id, events=[user_message("Subject: Refund\n\nRefund the invoice.")])
    assert "carried out" in lost.value.message
    assert [event.type for event in all_events(client, session.id)][0] == "user.message"
    stats = server.stats()
    assert stats["faults"] == {"fault_lost": 1}
    assert stats["user_messages"]["sessions_by_count"] == {"1": 1}


def test_a_retried_send_after_a_lost_answer_shows_as_a_duplicate_in_stats(server, agent, environment):
    server.configure(fault_lost=0.5, lost_routes=SEND, seed=2)
    with make_client(server, max_retries=3) as retrying:
        session = retrying.beta.sessions.create(agent=agent.id, environment_id=environment.id)
        for _ in range(4):
            try:
                retrying.beta.sessions.events.send(session.id, events=[user_message("hello")])
                break
            except anthropic.InternalServerError:
                continue
    stats = server.stats()
    assert stats["faults"]["fault_lost"] >= 1  # the seed makes the first send lose its answer
    assert stats["user_messages"]["sessions_with_duplicates"] == 1 and stats["user_messages"]["total"] >= 2


def test_a_lost_agent_update_still_made_the_version(server, client, agent):
    server.configure(fault_lost=1.0, lost_routes="POST /v1/agents/{agent_id}")
    with pytest.raises(anthropic.InternalServerError):
        client.beta.agents.update(agent.id, version=agent.version, system="changed")
    server.configure(fault_lost=0.0)
    assert client.beta.agents.retrieve(agent.id).version == agent.version + 1


def test_lost_knobs_refuse_unknown_routes_and_modes(server):
    with pytest.raises(ValueError, match="unknown route"):
        server.configure(lost_routes="POST /v1/nowhere")
    with pytest.raises(ValueError, match="lost_mode"):
        server.configure(lost_mode="sometimes")
    status, knobs, _ = http_json(server, "POST", "/_emulator/config", {"lost_routes": [CREATE, SEND]})
    assert status == 200 and knobs["lost_routes"] == f"{CREATE},{SEND}" and knobs["lost_mode"] == "500"
