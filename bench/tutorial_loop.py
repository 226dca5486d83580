"""The tutorial's own loop, reproduced as the baseline promptctl is measured against.

One ticket at a time: create a pinned session, send the message, then list
the events every second until the last one is ``session.status_idle``, read
the reply, archive. This is deliberately the naive client, calling the SDK
directly; promptctl's own code path is ``managed_agents.gateway``.
"""

from __future__ import annotations

import time

import anthropic


def tutorial_serial_loop(
    *, base_url: str, agent_id: str, version: int, environment_id: str, texts: list[str]
) -> tuple[float, list[str]]:
    client = anthropic.Anthropic(base_url=base_url, api_key="bench")
    replies: list[str] = []
    started = time.monotonic()
    for text in texts:
        session = client.beta.sessions.create(
            agent={"type": "agent", "id": agent_id, "version": version}, environment_id=environment_id
        )
        client.beta.sessions.events.send(
            session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": text}]}]
        )
        while True:
            time.sleep(1.0)
            events = list(client.beta.sessions.events.list(session.id))
            if events and events[-1].type == "session.status_idle":
                break
        replies.append(
            "".join(
                block.text
                for event in events
                if event.type == "agent.message"
                for block in event.content
                if block.type == "text"
            )
        )
        client.beta.sessions.archive(session.id)
    return time.monotonic() - started, replies
