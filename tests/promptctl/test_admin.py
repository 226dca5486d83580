"""Admin pages: records stay read-only, forged requests are refused, pages render, query counts stay flat.

The buttons themselves (file, approve, reject, apply, withdraw, sync, save policy, verify the audit chain)
are clicked in Chromium: tests/promptctl/test_review_browser.py, test_browser.py and test_admin_browser.py.
The tests here that post do so on purpose: each is about a forged request (no button, a missing CSRF
token, a URL the admin offers no way to) being refused with nothing changed.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from promptctl import services
from promptctl.models import Agent, AgentVersion, ChangeRequest, Pin
from tests.change_control_support import CHANNEL, V2, promote


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_forged_approve_by_the_requester_is_refused_in_words(agent, requester, reviewer):
    """The requester has no Approve button on her own request; a hand-made POST is refused and says why."""
    change = services.change_request_create(
        agent=agent,
        kind="promote",
        target_number=agent.latest_version_number,
        reason="baseline",
        actor=requester,
        channel=CHANNEL,
    )
    approve_url = reverse("admin:promptctl_changerequest_action", args=[change.pk, "approve"])
    response = logged_in(requester).post(approve_url, {"comment": ""}, follow=True)
    assert "four-eyes" in response.content.decode()
    change.refresh_from_db()
    assert change.status == "pending" and not change.approvals.exists()
    # The reviewer's confirm page is there to be clicked (tests/promptctl/test_browser.py clicks it).
    confirm = logged_in(reviewer).get(approve_url)
    assert confirm.status_code == 200 and b'id="confirm"' in confirm.content


def test_a_forged_post_without_a_csrf_token_is_refused(agent, requester, reviewer):
    change = services.change_request_create(
        agent=agent,
        kind="promote",
        target_number=agent.latest_version_number,
        reason="r",
        actor=requester,
        channel=CHANNEL,
    )
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(reviewer)
    url = reverse("admin:promptctl_changerequest_action", args=[change.pk, "approve"])
    assert strict.post(url, {"comment": ""}).status_code == 403
    page = strict.get(url)
    assert b"csrfmiddlewaretoken" in page.content
    change.refresh_from_db()
    assert change.status == "pending"


def test_records_are_read_only_and_forged_delete_or_revert_posts_are_refused(agent, requester, reviewer, admin_user):
    promote(agent, agent.latest_version_number, requester, reviewer)
    admin = logged_in(admin_user)
    version = agent.versions.get()
    change = ChangeRequest.objects.get()
    pin = Pin.objects.get()
    for name, pk in (("agentversion", version.pk), ("changerequest", change.pk), ("pin", pin.pk)):
        page = admin.get(reverse(f"admin:promptctl_{name}_change", args=[pk]))
        assert page.status_code == 200 and b'name="_save"' not in page.content, name
        assert admin.post(reverse(f"admin:promptctl_{name}_delete", args=[pk])).status_code == 403, name
    assert admin.get(reverse("admin:promptctl_agentversion_add")).status_code == 403
    # History is visible, and its per-version page refuses the revert POST.
    history = admin.get(reverse("admin:promptctl_changerequest_history", args=[change.pk]))
    assert history.status_code == 200 and b"victor" in history.content
    record = change.history.order_by("history_id").first()
    revert_url = reverse("admin:promptctl_changerequest_simple_history", args=[change.pk, record.history_id])
    assert admin.get(revert_url).status_code == 200
    assert admin.post(revert_url, {}).status_code == 405
    change.refresh_from_db()
    assert change.status == "applied"


def test_drift_is_shown_on_the_agent_and_versions_can_be_diffed(agent, requester, remote_client, admin_user):
    outside = remote_client.beta.agents.update(agent.remote_id, system=V2, version=agent.latest_version_number)
    admin = logged_in(admin_user)
    # The Sync button itself is clicked in a real browser (tests/promptctl/test_review_browser.py).
    found = services.agent_sync(agent=agent, actor=admin_user)
    assert [version.number for version in found.new_versions] == [outside.version]
    page = admin.get(reverse("admin:promptctl_agent_change", args=[agent.pk])).content.decode()
    assert 'id="drift-warning"' in page and f"v{outside.version}</a>" in page
    listing = admin.get(reverse("admin:promptctl_agent_changelist")).content.decode()
    assert "1 changed outside promptctl" in listing
    recorded = AgentVersion.objects.get(number=outside.version)
    diff = admin.get(
        reverse("admin:promptctl_agentversion_diff", args=[recorded.pk])
        + f"?against={agent.versions.order_by('number').first().number}"
    ).content.decode()
    assert 'id="system-diff"' in diff and "ROUTING RULE" in diff and 'class="insert"' in diff
    assert "changed outside promptctl" in diff


def test_the_timeline_tells_who_did_what(agent, requester, reviewer, admin_user):
    promote(agent, agent.latest_version_number, requester, reviewer)
    page = logged_in(admin_user).get(reverse("admin:promptctl_agent_timeline", args=[agent.pk])).content.decode()
    for fragment in ("created version", "requested #", "approved #", "applied #", "rita", "victor"):
        assert fragment in page, fragment
    assert (
        page.index("created version") < page.index("requested #") < page.index("approved #") < page.index("applied #")
    )


def test_responses_carry_a_request_id(admin_user):
    response = logged_in(admin_user).get(reverse("admin:index"), HTTP_X_REQUEST_ID="trace-123")
    assert response["X-Request-ID"] == "trace-123"


# --- query budgets ----------------------------------------------------------------------


def _grow(count: int, requester, reviewer) -> None:
    """Agents, versions and change requests up to ``count`` each (rows written directly; requests via the service)."""
    existing = Agent.objects.count()
    for index in range(existing, count):
        agent = Agent.objects.create(
            name=f"agent-{index:03d}",
            remote_id=f"agent_fake_{index:03d}",
            environment_id="env_fake",
            model="claude-sonnet-4-6",
            latest_version_number=1_700_000_000_000 + index,
            created_by=requester,
        )
        version = AgentVersion.objects.create(
            agent=agent,
            number=1_700_000_000_000 + index,
            system_prompt=f"prompt {index}",
            model="claude-sonnet-4-6",
            config={"system": f"prompt {index}"},
            config_sha256=f"{index:064x}",
            origin="promptctl",
            created_by=requester,
        )
        change = services.change_request_create(
            agent=agent, kind="promote", target_number=version.number, reason="grow", actor=requester, channel=CHANNEL
        )
        if index % 2:
            services.change_request_approve(change=change, reviewer=reviewer)


@pytest.mark.parametrize("page", ["agent", "agentversion", "changerequest", "pin", "auditevent"])
@pytest.mark.slow
def test_list_pages_run_a_flat_number_of_queries(page, requester, reviewer, admin_user, django_assert_max_num_queries):
    client = logged_in(admin_user)
    url = reverse(f"admin:promptctl_{page}_changelist")
    _grow(10, requester, reviewer)
    client.get(url)  # warm caches (content types, permissions)
    with CaptureQueriesContext(connection) as small:
        assert client.get(url).status_code == 200
    _grow(200, requester, reviewer)
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = client.get(url)
    assert response.status_code == 200
    expected_total = {
        "agent": "200 agents",
        "agentversion": "200 agent versions",
        "changerequest": "200 change requests",
    }
    assert page not in expected_total or expected_total[page] in response.content.decode()
