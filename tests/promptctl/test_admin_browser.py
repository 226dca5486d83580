"""The agent policy form's refusals, a refused filing and the audit page's Verify button, clicked in Chromium.

These were test-client posts to the admin's URLs; now the real buttons are
clicked and the page each click lands on is checked, with what it changed
(or that nothing changed, for a refusal). The rest of the review flow is in
tests/promptctl/test_review_browser.py.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.models import LogEntry

from promptctl.models import Agent, AuditEvent, ChangeRequest
from tests.browser_support import admin_login
from tests.change_control_support import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def login(browser_page, username: str):
    page = browser_page()
    admin_login(page, username=username, password=PASSWORD)
    return page


def test_the_policy_form_shows_refusals_keeps_the_policy_and_a_save_is_audited(browser_page, tutorial_agent):
    agent, _v1, _v2 = tutorial_agent
    url = f"/admin/promptctl/agent/{agent.pk}/change/"
    ada = login(browser_page, "ada")
    ada.goto(url)

    # The form's own refusal (backed by the database constraint): the page stays, says why, nothing changes.
    ada.fill("#id_required_approvals", "0")
    ada.click("input[name=_save]")
    ada.wait_for_selector(".errornote")
    assert "at least 1 approval" in ada.inner_text("#content")
    assert Agent.objects.get(pk=agent.pk).required_approvals == 1

    # The service's refusal (an approver group that does not exist): back on the agent page, in words.
    ada.goto(url)
    ada.fill("#id_required_approvals", "3")
    ada.fill("#id_approver_group", "nobody")
    ada.click("input[name=_save]")
    ada.wait_for_url(f"**{url}")
    assert "There is no group 'nobody'" in ada.inner_text(".messagelist")
    assert Agent.objects.get(pk=agent.pk).required_approvals == 1
    assert not AuditEvent.objects.filter(verb="agent.policy").exists()

    # A good save goes through the service, which records who changed what, from which request.
    ada.goto(url)
    ada.fill("#id_required_approvals", "2")
    ada.fill("#id_approver_group", "reviewers")
    ada.fill("#id_regression_tolerance", "1")
    ada.click("input[name=_save]")
    ada.wait_for_url("**/admin/promptctl/agent/")
    assert "was changed successfully" in ada.inner_text(".messagelist")
    agent.refresh_from_db()
    assert (agent.required_approvals, agent.regression_tolerance) == (2, 1)
    event = AuditEvent.objects.filter(verb="agent.policy").get()
    assert event.before["required_approvals"] == 1 and event.after["required_approvals"] == 2
    assert event.actor.username == "ada" and event.request_id
    # "Recent actions" lists the save once: the audit path's entry, not a second one from the admin's form.
    entries = LogEntry.objects.filter(user__username="ada", object_id=str(agent.pk))
    assert [entry.change_message for entry in entries] == ["agent.policy"]
    ada.goto("/admin/")
    assert ada.inner_text("#recent-actions-module").count(agent.name) == 1


def test_a_rollback_with_nothing_to_roll_back_is_refused_on_the_form(browser_page, tutorial_agent):
    agent, v1, _v2 = tutorial_agent
    alice = login(browser_page, "alice")
    alice.goto(f"/admin/promptctl/changerequest/add/?agent={agent.pk}")
    alice.select_option("#id_kind", "rollback")
    alice.fill("#id_channel", "staging")
    alice.select_option("#id_target_version", str(v1.number))
    alice.fill("#id_reason", "undo the last promotion")
    alice.click("#file-request")
    alice.wait_for_selector("#refusal")
    assert "no staging pin yet" in alice.inner_text("#refusal")
    assert re.search(r"/admin/promptctl/changerequest/add/", alice.url)
    assert alice.input_value("#id_reason") == "undo the last promotion"  # the form keeps what she typed
    assert not ChangeRequest.objects.exists()


def test_the_audit_pages_verify_button_checks_the_chain(browser_page, tutorial_agent):
    ada = login(browser_page, "ada")
    ada.goto("/admin/promptctl/auditevent/")
    ada.click("#verify-chain")
    ada.wait_for_selector(".messagelist")
    assert ada.url.endswith("/admin/promptctl/auditevent/")
    assert "Audit chain verified" in ada.inner_text(".messagelist")


def test_the_audit_segments_page_and_the_verify_button_name_a_segment_marked_archived_by_hand(
    browser_page, tutorial_agent, tmp_path
):
    from django.db import connection

    from promptctl.audit import audit_checkpoint_publish
    from promptctl.audit.segments import audit_segment_seal

    audit_checkpoint_publish(reason="command")
    segment = audit_segment_seal(actor=None, through=5, path=tmp_path / "segment-1.jsonl")
    ada = login(browser_page, "ada")
    ada.goto("/admin/")
    ada.click("text=Audit segments")
    ada.wait_for_selector("#result_list")
    row = ada.inner_text("#result_list tbody tr")
    assert "#1 to #5" in row and "no: its events are still in the database" in row and "intact" in row

    # An insider marks it archived in SQL (the one update the row allows) and leaves the events.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE promptctl_auditsegment SET archived_at = CURRENT_TIMESTAMP WHERE id = %s", [segment.pk])
    ada.reload()
    assert "the mark was made by hand" in ada.inner_text("#result_list tbody tr")
    ada.goto("/admin/promptctl/auditevent/")
    ada.click("#verify-chain")
    ada.wait_for_selector(".messagelist")
    assert "segment 1 is marked archived, but events #1 to #5 are still in the database" in ada.inner_text(
        ".messagelist"
    )
