"""Two approved requests for the same pin applied at the same moment: exactly one wins."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from promptctl import services
from promptctl.errors import DomainError
from promptctl.models import ChangeRequest, Pin
from tests.change_control_support import CHANNEL, V2, promote

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _apply_together(changes, actor) -> list[object]:
    barrier = threading.Barrier(len(changes))
    outcomes: list[object] = [None] * len(changes)

    def worker(index: int, change: ChangeRequest) -> None:
        try:
            barrier.wait(timeout=10)
            outcomes[index] = services.change_request_apply(change=change, actor=actor)
        except DomainError as refusal:
            outcomes[index] = refusal
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(changes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes


@pytest.mark.parametrize("round_number", range(3))
def test_two_applies_at_once_exactly_one_wins(round_number, agent, requester, reviewer, second_reviewer):
    first = agent.latest_version_number
    second = services.version_create(agent=agent, system_prompt=V2, actor=requester).number
    third = services.version_create(agent=agent, system_prompt=V2 + "\nBe brief.", actor=requester).number
    promote(agent, first, requester, reviewer)
    rivals = []
    for number in (second, third):
        change = services.change_request_create(
            agent=agent, kind="promote", target_number=number, reason=f"to v{number}", actor=requester, channel=CHANNEL
        )
        services.change_request_approve(change=change, reviewer=reviewer)
        rivals.append(change)

    outcomes = _apply_together(rivals, second_reviewer)

    won = [o for o in outcomes if isinstance(o, Pin)]
    lost = [o for o in outcomes if isinstance(o, DomainError)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    pin = Pin.objects.select_related("version").get(agent=agent, channel=CHANNEL)
    assert pin.revision == 2 and pin.version.number in (second, third)
    assert f"now at version {pin.version.number}" in str(lost[0])
    statuses = sorted(ChangeRequest.objects.filter(pk__in=[c.pk for c in rivals]).values_list("status", flat=True))
    assert statuses == ["applied", "superseded"]
    loser = ChangeRequest.objects.get(pk__in=[c.pk for c in rivals], status="superseded")
    assert f"now at version {pin.version.number}" in loser.status_reason
    from promptctl.audit import audit_verify

    assert audit_verify().ok  # concurrent appends did not fork the chain
