"""The review and filing flow and the agent page, clicked through in Debian's headless Chromium.

Each action is done by a role that may (the click lands where it should and the
record changed) and looked for by one that may not (the button is absent, or
the refusal is in words on the page). Nothing posts to an action URL directly.

The screenshots in ``docs/images`` come from these tests:
``PROMPTCTL_SCREENSHOT_DIR=docs/images pytest tests/promptctl/test_review_browser.py``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from promptctl.models import Agent, ChangeRequest, Pin
from tests.browser_support import admin_login
from tests.change_control_support import PASSWORD, V1, promote

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHANGE_PAGE = re.compile(r"/admin/promptctl/changerequest/\d+/change/$")
CLI_FLAG = re.compile(r"(?<![\w-])--[a-z]")


def no_cli_flags(text: str) -> str:
    """Web pages and messages speak buttons and links, never CLI flags."""
    assert not CLI_FLAG.search(text), text
    return text


def screenshot(page, tmp_path: Path, name: str) -> Path:
    target = Path(os.environ.get("PROMPTCTL_SCREENSHOT_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    path = target / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def login(browser_page, username: str):
    page = browser_page()
    admin_login(page, username=username, password=PASSWORD)
    return page


def test_agent_page_sync_and_policy_save(browser_page, tutorial_agent, people, remote_client, tmp_path):
    agent, v1, v2 = tutorial_agent
    promote(agent, v1.number, people["alice"], people["bob"])  # a staging pin, for the page to show
    url = f"/admin/promptctl/agent/{agent.pk}/change/"
    outside = remote_client.beta.agents.update(agent.remote_id, system=V1 + "\nBe brief.", version=v2.number)

    # A reviewer may not sync: no button, and the page says who may.
    bob = login(browser_page, "bob")
    bob.goto(url)
    assert bob.locator("#sync").count() == 0
    assert "needs the requester or admin role" in no_cli_flags(bob.inner_text("#sync-unavailable"))
    assert bob.locator("input[name=_save]").count() == 0

    # A requester syncs: the click lands back on the agent page with what was found.
    alice = login(browser_page, "alice")
    alice.goto(url)
    alice.click("#sync")
    alice.wait_for_url(f"**{url}")
    assert f"Found versions changed outside promptctl: v{outside.version}" in alice.inner_text(".messagelist")
    assert f"v{outside.version}" in alice.inner_text("#drift-warning")
    assert agent.versions.filter(number=outside.version, origin="outside").exists()
    # ...but may not change the approval policy: no Save button, the fields are read-only.
    assert alice.locator("input[name=_save]").count() == 0
    assert alice.locator("#id_required_approvals").count() == 0
    alice.click("#sync")
    alice.wait_for_url(f"**{url}")
    assert "is in sync with the server" in alice.inner_text(".messagelist")

    # The admin saves the policy: two approvals from now on, recorded through the service.
    ada = login(browser_page, "ada")
    ada.goto(url)
    ada.fill("#id_required_approvals", "2")
    ada.click("input[name=_save]")
    ada.wait_for_url("**/admin/promptctl/agent/")
    assert "was changed successfully" in ada.inner_text(".messagelist")
    assert Agent.objects.get(pk=agent.pk).required_approvals == 2
    ada.goto(url)
    assert ada.input_value("#id_required_approvals") == "2"
    assert ada.locator("#sync").count() == 1 and ada.locator("#file-change").count() == 1
    screenshot(ada, tmp_path, "agent-page.png")

    # The admin syncs too, from the same page (the button is outside the policy form).
    ada.click("#sync")
    ada.wait_for_url(f"**{url}")
    assert "is in sync with the server" in ada.inner_text(".messagelist")
    assert Agent.objects.get(pk=agent.pk).required_approvals == 2


def test_the_tutorials_v2_promotion_is_decided_from_the_review_page(
    request, tutorial_agent, tutorial_comparison, people, tmp_path
):
    browser_page = request.getfixturevalue("browser_page")  # after the runs (see ``tutorial_comparison``)
    agent, v1, v2 = tutorial_agent
    comparison = tutorial_comparison
    flipped = sorted(f["ticket"] for f in comparison.result["flips"] if f["direction"] == "right_to_wrong")
    assert flipped

    # A reviewer may not file: the change-request list offers no way to.
    bob = login(browser_page, "bob")
    bob.goto("/admin/promptctl/changerequest/")
    assert bob.locator(".object-tools a.addlink").count() == 0

    # alice files from the agent page: the target and the evidence are picked from lists.
    alice = login(browser_page, "alice")
    alice.goto(f"/admin/promptctl/agent/{agent.pk}/change/")
    alice.click("#file-change")
    alice.wait_for_url(re.compile(r"/admin/promptctl/changerequest/add/\?agent=\d+$"))
    assert alice.inner_text("#filing-agent") == "ticket-triage"
    evidence_labels = alice.locator("#id_evidence option").all_inner_texts()
    assert evidence_labels[1].startswith(
        f"Comparison #{comparison.pk}: v{v1.number} → v{v2.number} — REGRESSED: billing"
    )
    assert any(label.startswith("Run #") and "correct" in label for label in evidence_labels)
    alice.select_option("#id_kind", "promote")
    alice.select_option("#id_target_version", str(v2.number))
    alice.select_option("#id_evidence", f"comparison:{comparison.pk}")
    alice.fill("#id_reason", "Route usage questions to api-platform")
    alice.click("#file-request")
    # Refused at filing (not at apply): the regression is not accepted. The form keeps what she typed.
    alice.wait_for_selector("#refusal")
    refusal = no_cli_flags(alice.inner_text("#refusal"))
    assert "flags a regression (billing)" in refusal and "Accept a flagged regression because" in refusal
    assert alice.input_value("#id_reason") == "Route usage questions to api-platform"
    assert alice.input_value("#id_evidence") == f"comparison:{comparison.pk}"
    assert not ChangeRequest.objects.filter(target_version=v2).exists()
    alice.fill("#id_accept_regression_reason", "api-platform needs this now; billing is fixed in v3")
    alice.click("#file-request")
    alice.wait_for_url(CHANGE_PAGE)
    change = ChangeRequest.objects.get(target_version=v2)
    assert change.approvals_required == 2 and change.evidence["regressed"] is True
    assert "it needs 2 approvals" in alice.inner_text(".messagelist")
    # The requester gets no Approve or Reject on her own request, Withdraw, and Apply's reason in words.
    assert alice.locator("#action-approve").count() == 0 and alice.locator("#action-reject").count() == 0
    assert alice.locator("#action-withdraw").count() == 1
    assert "four-eyes" in alice.inner_text("#decision")
    assert "0 of 2" in no_cli_flags(alice.inner_text("#blocked-apply"))

    # bob decides from the page alone: what moves, the diff, billing flagged with its flips, his buttons only.
    bob.goto(f"/admin/promptctl/changerequest/{change.pk}/change/")
    assert bob.inner_text("#moves") == f"Promote ticket-triage/production: v{v1.number} → v{v2.number}"
    assert "canary" not in bob.inner_text("#decision").lower()
    assert bob.inner_text("#approvals") == "0 of 2 approvals"
    assert "ROUTING RULE" in bob.inner_text("#diff")
    assert "Regressed: billing" in bob.inner_text("#evidence-verdict")
    assert bob.locator("#evidence svg.evals-chart").count() == 1
    flips = bob.inner_text("#flips")
    assert all(ticket in flips for ticket in flipped)
    assert "api-platform needs this now" in bob.inner_text("#accepted-regression")
    assert bob.locator("#change-actions a").all_inner_texts() == ["Approve", "Reject"]
    assert "0 of 2" in bob.inner_text("#blocked-apply")
    assert not bob.locator("#details").get_attribute("open")
    screenshot(bob, tmp_path, "review-page.png")
    page_text = no_cli_flags(bob.inner_text("#review"))
    assert "--" not in page_text

    bob.click("#action-approve")
    bob.wait_for_url(f"**/changerequest/{change.pk}/action/approve/")
    bob.fill("#id_comment", "Accepted: billing fix is tracked")
    bob.click("#confirm")
    bob.wait_for_url(CHANGE_PAGE)
    assert "1 of 2 approvals" in bob.inner_text(".messagelist")
    assert bob.locator("#action-approve").count() == 0 and bob.locator("#action-apply").count() == 0
    assert "You approved this request" in bob.inner_text("#decision")
    assert "bob" in bob.inner_text("#decisions")

    carol = login(browser_page, "carol")
    carol.goto(f"/admin/promptctl/changerequest/{change.pk}/change/")
    assert carol.inner_text("#approvals") == "1 of 2 approvals"
    carol.click("#action-approve")
    carol.click("#confirm")
    carol.wait_for_url(CHANGE_PAGE)
    assert "2 of 2 approvals" in carol.inner_text(".messagelist")
    # Apply appears only now that it would succeed.
    carol.click("#action-apply")
    carol.wait_for_url(f"**/changerequest/{change.pk}/action/apply/")
    carol.click("#confirm")
    carol.wait_for_url(CHANGE_PAGE)
    assert f"production pin of ticket-triage is now v{v2.number}" in carol.inner_text(".messagelist")
    assert carol.inner_text("#pin-version") == f"v{v2.number}"
    assert carol.locator("#change-actions a").count() == 0
    assert Pin.objects.get(agent=agent, channel="production").version == v2


def test_rollback_canary_reject_and_withdraw(browser_page, tutorial_agent, people):
    agent, v1, v2 = tutorial_agent
    alice_user, bob_user = people["alice"], people["bob"]
    promote(agent, v1.number, alice_user, bob_user)
    promote(agent, v2.number, alice_user, bob_user)  # staging: v1, then v2

    # alice files a rollback to v1 and a canary of v1 at 10 % on staging, both from the lists.
    alice = login(browser_page, "alice")

    def file(kind: str, target: int, reason: str, percent: str = "") -> ChangeRequest:
        alice.goto(f"/admin/promptctl/changerequest/add/?agent={agent.pk}")
        alice.select_option("#id_kind", kind)
        alice.fill("#id_channel", "staging")
        alice.select_option("#id_target_version", str(target))
        if percent:
            alice.fill("#id_canary_percent", percent)
        alice.fill("#id_reason", reason)
        alice.click("#file-request")
        alice.wait_for_url(CHANGE_PAGE)
        return ChangeRequest.objects.get(reason=reason)

    rollback = file("rollback", v1.number, "v2 misroutes billing")
    assert alice.inner_text("#moves") == f"Roll back ticket-triage/staging: v{v2.number} → v{v1.number}"

    # carol rejects: without a comment the form stays and says a comment is needed; with one it closes.
    carol = login(browser_page, "carol")
    carol.goto(f"/admin/promptctl/changerequest/{rollback.pk}/change/")
    assert carol.locator("#action-withdraw").count() == 0  # only the requester (or an admin) withdraws
    carol.click("#action-reject")
    carol.wait_for_url(f"**/changerequest/{rollback.pk}/action/reject/")
    carol.click("#confirm")
    carol.wait_for_url(f"**/changerequest/{rollback.pk}/action/reject/")
    assert "needs a comment" in no_cli_flags(carol.inner_text("#refusal"))
    assert carol.locator("#id_comment").count() == 1
    rollback.refresh_from_db()
    assert rollback.status == ChangeRequest.Status.PENDING
    carol.fill("#id_comment", "Fix billing forward instead")
    carol.click("#confirm")
    carol.wait_for_url(CHANGE_PAGE)
    assert f"Rejected change request #{rollback.pk}" in carol.inner_text(".messagelist")
    rollback.refresh_from_db()
    assert rollback.status == ChangeRequest.Status.REJECTED
    assert carol.locator("#change-actions a").count() == 0

    canary = file("canary", v1.number, "try v1 on a tenth", percent="10")
    assert alice.inner_text("#moves") == (
        f"Canary on ticket-triage/staging: v{v1.number} gets 10% of traffic, v{v2.number} keeps 90%"
    )
    # bob approves and applies it; alice may not approve her own.
    assert alice.locator("#action-approve").count() == 0
    bob = login(browser_page, "bob")
    bob.goto(f"/admin/promptctl/changerequest/{canary.pk}/change/")
    bob.click("#action-approve")
    bob.click("#confirm")
    bob.wait_for_url(CHANGE_PAGE)
    assert "1 of 1 approvals" in bob.inner_text(".messagelist")
    bob.click("#action-apply")
    bob.click("#confirm")
    bob.wait_for_url(CHANGE_PAGE)
    assert f"with a canary of v{v1.number} at 10%" in bob.inner_text(".messagelist")
    pin = Pin.objects.get(agent=agent, channel="staging")
    assert pin.version == v2 and pin.canary_version == v1 and pin.canary_percent == 10

    # A promotion alice then withdraws: bob sees no Withdraw; alice's click closes it.
    promotion = file("promote", v1.number, "make v1 the staging version")
    assert alice.inner_text("#moves") == f"Promote ticket-triage/staging: v{v2.number} → v{v1.number}"
    assert "canary percent" not in alice.inner_text("body").lower()
    bob.goto(f"/admin/promptctl/changerequest/{promotion.pk}/change/")
    assert bob.locator("#action-withdraw").count() == 0
    alice.click("#action-withdraw")
    alice.wait_for_url(f"**/changerequest/{promotion.pk}/action/withdraw/")
    alice.click("#confirm")
    alice.wait_for_url(CHANGE_PAGE)
    assert f"Withdrew change request #{promotion.pk}" in alice.inner_text(".messagelist")
    promotion.refresh_from_db()
    assert promotion.status == ChangeRequest.Status.WITHDRAWN
