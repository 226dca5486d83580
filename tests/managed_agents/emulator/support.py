"""Helpers for the emulator tests (fixtures are in ``conftest.py``): the real ``anthropic`` SDK over loopback HTTP.

Clients validate every response strictly against the SDK's own types, so a JSON shape
the SDK would not parse fails the tests.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import anthropic

BILLING_TICKET_ABOUT_USAGE = "Subject: Invoice counts our API usage twice\n\nThe invoice charged us double for API usage in May. Please refund the duplicate charge."


def make_client(server, **options) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=server.base_url, api_key="emulator-accepts-any-key", _strict_response_validation=True, **options
    )


def user_message(text: str) -> dict:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def all_events(client, session_id: str) -> list:
    return list(client.beta.sessions.events.list(session_id, limit=100))


def wait_for_idle_by_polling(client, session_id: str, *, interval: float = 0.2, timeout: float = 15.0) -> list:
    """The tutorial's loop: list events every ``interval`` until the last one is ``session.status_idle``.

    The tutorial polls every second; a shorter interval makes the same requests sooner.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(interval)
        events = client.beta.sessions.events.list(session_id, limit=100).data
        if events and events[-1].type == "session.status_idle":
            return events
    raise AssertionError(f"session {session_id} did not go idle within {timeout} s")


def ask_by_stream(client, session_id: str, text: str, *, timeout: float = 15.0) -> list:
    """Open the stream first, then send, then read until idle (no replay: order matters)."""
    received = []
    with client.beta.sessions.events.stream(session_id, timeout=timeout) as stream:
        client.beta.sessions.events.send(session_id, events=[user_message(text)])
        for event in stream:
            received.append(event)
            if event.type == "session.status_idle":
                break
    return received


def agent_reply(events) -> str:
    messages = [event for event in events if event.type == "agent.message"]
    assert len(messages) == 1, [event.type for event in events]
    return messages[0].content[0].text


def http_json(server, method: str, path: str, body: dict | None = None, headers: dict | None = None):
    request = urllib.request.Request(
        server.base_url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as failure:
        return failure.code, json.loads(failure.read()), failure.headers
