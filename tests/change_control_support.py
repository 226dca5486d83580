"""Change-control helpers shared by the test packages (no tests or fixtures here): the tutorial's prompts and a promotion.

Fixtures live in ``conftest.py`` files; test modules import only plain helpers
like these.
"""

from __future__ import annotations

from promptctl import services
from promptctl.tutorial import V1_PROMPT, V2_PROMPT

V1 = V1_PROMPT
V2 = V2_PROMPT
PASSWORD = "correct-horse-battery"
# Change-control mechanics are the same on every channel. Production promotions
# also pass the evals app's evidence gate (tested with the evals app), so these
# tests move the staging pin unless a test is about production itself.
CHANNEL = "staging"


def promote(agent, number, requester, reviewer, *, kind="promote", channel=CHANNEL, percent=None):
    """File, approve and apply one change through the services; returns the applied request."""
    change = services.change_request_create(
        agent=agent,
        kind=kind,
        target_number=number,
        reason=f"move to v{number}",
        actor=requester,
        channel=channel,
        canary_percent=percent,
    )
    services.change_request_approve(change=change, reviewer=reviewer)
    services.change_request_apply(change=change, actor=reviewer)
    change.refresh_from_db()
    return change
