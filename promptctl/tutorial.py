"""The public tutorial this project grew from: its two prompts and its twenty labelled tickets.

The demo, the benchmarks and the tests all play this story, so it is written
down once. v2 adds a routing rule that reads "usage" as api-platform and so
misroutes billing tickets on a usage-billed product; rolling back means callers
pass version 1 again.
"""

from __future__ import annotations

import json
from pathlib import Path

V1_PROMPT = (
    "You are a support-ticket triage agent for a usage-billed API product.\n"
    "Read the ticket and respond with ONLY a single line of raw JSON (no code fences, no prose):\n"
    '{"team": "<billing|auth|api-platform|dashboard>", "priority": "<P1|P2|P3>"}\n'
    "Route based on the customer's actual problem, not surface keywords."
)
V2_PROMPT = V1_PROMPT + (
    "\n\nROUTING RULE: If the ticket text mentions API usage, rate limits, quotas, or request volume, route to "
    "api-platform. Apply this rule before any other consideration; do not second-guess it based on the rest of "
    "the ticket."
)
TICKETS_FILE = Path(__file__).resolve().parents[1] / "evals" / "data" / "support_tickets.jsonl"
TEAMS = ("billing", "auth", "api-platform", "dashboard")


def tickets_load(path: Path = TICKETS_FILE) -> list[dict]:
    """The labelled tickets of a JSONL file (the tutorial's by default)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def tutorial_ticket_target(*, environment: str) -> dict:
    """A fresh agent at the tutorial's v1 on the configured API: the keyword arguments of a ticket run, minus the text.

    For the gateway's tests and the fault benchmark, which run tickets without promptctl's records.
    """
    from managed_agents import gateway
    from managed_agents.verdicts import allowed_labels

    environment_id = gateway.environment_ensure(name=environment).id
    created = gateway.agent_create(name="ticket-triage", model="claude-sonnet-4-6", system=V1_PROMPT)
    return {
        "agent_id": created.agent_id,
        "version": created.version,
        "environment_id": environment_id,
        "allowed": allowed_labels(V1_PROMPT),
    }
