"""A requester and a reviewer move a pin through the admin in a real browser."""

from __future__ import annotations

import os
import re

import pytest

from promptctl import services
from promptctl.models import ChangeRequest, Pin
from tests.browser_support import admin_login
from tests.change_control_support import CHANNEL, PASSWORD, V1, V2, promote

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SCREENSHOTS = os.environ.get("PROMPTCTL_SCREENSHOTS")  # a folder: keep screenshots to look at


def shot(page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)


def test_request_approve_apply_and_the_four_eyes_refusal(browser_page, emulator):
    requester = services.user_create(username="rita", role="requester", password=PASSWORD)
    reviewer = services.user_create(username="victor", role="reviewer", password=PASSWORD)
    agent = services.agent_create(name="ticket-triage", model="claude-sonnet-4-6", system_prompt=V1, actor=requester)
    first = agent.latest_version_number
    second = services.version_create(agent=agent, system_prompt=V2, actor=requester).number
    promote(agent, first, requester, reviewer)

    # The requester files a request in the admin.
    rita = browser_page()
    admin_login(rita, username="rita", password=PASSWORD)
    rita.goto("/admin/promptctl/changerequest/add/")  # the only agent is chosen already
    rita.select_option("#id_kind", "promote")
    rita.fill("#id_channel", CHANNEL)
    rita.select_option("#id_target_version", str(second))
    rita.fill("#id_reason", "Route usage questions to api-platform")
    rita.click("#file-request")
    rita.wait_for_url(re.compile(r"/admin/promptctl/changerequest/\d+/change/$"))
    change = ChangeRequest.objects.get(target_version__number=second)
    assert f"is now v{first}" in rita.inner_text("#pin-now")
    shot(rita, "1-filed")

    # ...and is offered no Approve on her own request: the page says why.
    assert rita.locator("#action-approve").count() == 0
    assert "four-eyes" in rita.inner_text("#decision")
    shot(rita, "2-no-approve")
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.PENDING

    # The reviewer approves and applies; the page shows the pin moved.
    victor = browser_page()
    admin_login(victor, username="victor", password=PASSWORD)
    victor.goto(f"/admin/promptctl/changerequest/{change.pk}/change/")
    victor.click("#action-approve")
    victor.fill("#id_comment", "Eval looks fine")
    victor.click("#confirm")
    victor.wait_for_url(re.compile(rf"/changerequest/{change.pk}/change/$"))
    assert "Approved change request" in victor.inner_text(".messagelist")
    victor.click("#action-apply")
    victor.click("#confirm")
    victor.wait_for_url(re.compile(rf"/changerequest/{change.pk}/change/$"))
    assert f"is now v{second}" in victor.inner_text(".messagelist")
    assert victor.inner_text("#pin-version") == f"v{second}"
    shot(victor, "3-applied")

    pin = Pin.objects.get(agent=agent, channel=CHANNEL)
    assert pin.version.number == second and pin.change_id == change.pk

    victor.goto(f"/admin/promptctl/agent/{agent.pk}/timeline/")
    timeline = victor.inner_text("#timeline")
    assert f"applied #{change.pk}" in timeline and "rita" in timeline and "victor" in timeline
    shot(victor, "4-timeline")
