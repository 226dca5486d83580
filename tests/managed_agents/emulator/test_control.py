"""The emulator's control endpoints, stats, request headers, and its speed under concurrent sessions."""

from __future__ import annotations

import concurrent.futures
import json
import time

import pytest

from managed_agents.tickets import ticket_text
from promptctl.tutorial import tickets_load
from tests.managed_agents.emulator.support import agent_reply, ask_by_stream, http_json, make_client, user_message

# --- control, stats, headers, concurrency ----------------------------------------------------------------


def test_control_endpoints_configure_stats_and_reset(server):
    status, knobs, _ = http_json(
        server, "POST", "/_emulator/config", {"latency": "0.1-0.3", "fault_429": 0.25, "versions": "timestamp"}
    )
    assert status == 200
    assert (knobs["latency_min"], knobs["latency_max"], knobs["fault_429"], knobs["versions"]) == (
        0.1,
        0.3,
        0.25,
        "timestamp",
    )

    status, refusal, _ = http_json(server, "POST", "/_emulator/config", {"fault_500": 3})
    assert status == 400 and "between 0 and 1" in refusal["error"]["message"]
    status, refusal, _ = http_json(server, "POST", "/_emulator/config", {"latency_typo": 1})
    assert status == 400 and "unknown knob" in refusal["error"]["message"]

    status, _, _ = http_json(server, "POST", "/_emulator/reset", {})
    assert status == 200
    assert server.stats()["knobs"]["versions"] == "sequential"
    assert server.stats()["knobs"]["fault_429"] == 0.0


def test_stats_count_sessions_by_status_and_requests(server, client, agent, environment):
    server.configure(latency=30)
    running = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    client.beta.sessions.create(agent=agent.id, environment_id=environment.id)  # stays idle
    archived = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    client.beta.sessions.events.send(running.id, events=[user_message("hello")])
    client.beta.sessions.archive(archived.id)

    stats = server.stats()
    assert stats["sessions"] == {
        "total": 3,
        "created": 3,
        "archived": 1,
        "unarchived": 2,
        "by_status": {"idle": 2, "running": 1, "rescheduling": 0, "terminated": 0},
    }
    assert stats["user_messages"] == {"total": 1, "sessions_by_count": {"0": 2, "1": 1}, "sessions_with_duplicates": 0}
    assert stats["agents"] == 1
    assert stats["requests"]["POST /v1/sessions"] == 3
    assert stats["requests"]["POST /v1/sessions/{session_id}/archive"] == 1


def test_requests_need_an_api_key_and_the_beta_header(server):
    status, body, headers = http_json(
        server, "GET", "/v1/agents", headers={"anthropic-beta": "managed-agents-2026-04-01"}
    )
    assert status == 401 and body["error"]["type"] == "authentication_error"
    status, body, headers = http_json(server, "GET", "/v1/agents", headers={"x-api-key": "k"})
    assert status == 400 and "managed-agents-2026-04-01" in body["error"]["message"]
    assert body["type"] == "error" and headers["request-id"].startswith("req_")
    status, body, _ = http_json(server, "GET", "/v1/nothing-here", headers={"x-api-key": "k"})
    assert status == 404 and body["error"]["type"] == "not_found_error"


@pytest.mark.slow
def test_many_concurrent_streaming_sessions(server, agent, environment):
    server.configure(latency="0.3-0.4")
    labelled = tickets_load()

    work = labelled * 4  # 80 sessions at once
    # One client per thread, built before the clock starts: the time measured is the sessions' alone.
    clients = [make_client(server, max_retries=0) for _ in work]

    def triage(ticket: dict, worker) -> str:
        with worker:
            session = worker.beta.sessions.create(
                agent={"type": "agent", "id": agent.id, "version": 1},
                environment_id=environment.id,
                metadata={"ticket": ticket["id"]},
            )
            text = ticket_text(subject=ticket["subject"], body=ticket["body"])
            verdict = json.loads(agent_reply(ask_by_stream(worker, session.id, text, timeout=30)))
            worker.beta.sessions.archive(session.id)
            return verdict["team"]

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(work)) as pool:
        teams = list(pool.map(triage, work, clients))
    elapsed = time.monotonic() - started

    assert elapsed < 8, f"80 sessions of 0.3-0.4 s each took {elapsed:.1f} s: replies are not concurrent"
    assert sum(team == ticket["team"] for team, ticket in zip(teams, work, strict=True)) >= 72
    stats = server.stats()["sessions"]
    assert stats["total"] == stats["archived"] == 80


def test_plain_requests_are_fast_enough_for_benchmarks(client, agent):
    started = time.monotonic()
    for _ in range(100):
        client.beta.agents.retrieve(agent.id)
    assert time.monotonic() - started < 2.0  # about 1 ms each on loopback; Nagle's delay would make it 4 s
