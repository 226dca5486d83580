"""Shared pieces of the gateway tests: the tutorial's tickets, their text as the gateway sends it, route names."""

from __future__ import annotations

from managed_agents import tickets
from promptctl.tutorial import tickets_load

TICKETS = tickets_load()
BILLING = next(ticket for ticket in TICKETS if ticket["id"] == "TKT-1001")
CREATE = "POST /v1/sessions"
SEND = "POST /v1/sessions/{session_id}/events"


def text_of(ticket: dict) -> str:
    """A tutorial ticket as the gateway sends it (``Subject: ...`` then the body)."""
    return tickets.ticket_text(subject=ticket["subject"], body=ticket["body"])
