"""``change_request_actions``: the buttons each person gets on a request, and why the missing ones are missing."""

from __future__ import annotations

from promptctl import services
from promptctl.review import change_request_actions, change_request_moves
from tests.change_control_support import CHANNEL, V2, promote


def _file(agent, number, requester, **extra):
    return services.change_request_create(
        agent=agent, kind="promote", target_number=number, reason="try it", actor=requester, channel=CHANNEL, **extra
    )


def test_the_requester_gets_withdraw_and_reviewers_get_the_decision(agent, requester, reviewer, admin_user):
    change = _file(agent, agent.latest_version_number, requester)
    mine = change_request_actions(change=change, user=requester)
    assert mine.allowed == ("withdraw",)
    assert any("four-eyes" in note for note in mine.notes)
    assert [blocked.name for blocked in mine.blocked] == ["apply"]
    assert "0 of 1" in mine.blocked[0].reason

    theirs = change_request_actions(change=change, user=reviewer)
    assert theirs.allowed == ("approve", "reject")
    assert "0 of 1" in theirs.blocked[0].reason
    # An admin (superuser, in both groups) decides, and may withdraw anyone's request.
    assert change_request_actions(change=change, user=admin_user).allowed == ("approve", "reject", "withdraw")


def test_apply_appears_only_when_it_would_succeed(agent, requester, reviewer, second_reviewer):
    first = agent.latest_version_number
    second = services.version_create(agent=agent, system_prompt=V2, actor=requester).number
    promote(agent, first, requester, reviewer)
    change = _file(agent, second, requester)
    other = _file(agent, second, requester)
    services.change_request_approve(change=change, reviewer=reviewer)
    change.refresh_from_db()
    decided = change_request_actions(change=change, user=reviewer)
    assert decided.allowed == ("apply",)  # approved: reject is still possible for others, but victor decided
    assert any("You approved" in note for note in decided.notes)
    assert change_request_actions(change=change, user=second_reviewer).allowed == ("reject", "apply")

    # Once another request moved the pin, Apply is gone and the reason links to a new filing.
    services.change_request_approve(change=other, reviewer=reviewer)
    services.change_request_apply(change=other, actor=reviewer)
    change.refresh_from_db()
    assert change.status == "superseded"
    assert change_request_actions(change=change, user=reviewer).allowed == ()


def test_what_moves_names_the_canary_share_only_for_canaries(agent, requester, reviewer):
    first = agent.latest_version_number
    second = services.version_create(agent=agent, system_prompt=V2, actor=requester).number
    promote(agent, first, requester, reviewer)
    promotion = _file(agent, second, requester)
    assert change_request_moves(change=promotion) == f"Promote ticket-triage/{CHANNEL}: v{first} → v{second}"
    canary = services.change_request_create(
        agent=agent, kind="canary", target_number=second, reason="a tenth", actor=requester, channel=CHANNEL,
        canary_percent=10,
    )  # fmt: skip
    assert change_request_moves(change=canary) == (
        f"Canary on ticket-triage/{CHANNEL}: v{second} gets 10% of traffic, v{first} keeps 90%"
    )


def test_the_review_page_runs_a_bounded_number_of_queries(
    agent, requester, reviewer, second_reviewer, django_assert_max_num_queries
):
    from django.test import Client
    from django.urls import reverse

    first = agent.latest_version_number
    second = services.version_create(agent=agent, system_prompt=V2, actor=requester).number
    promote(agent, first, requester, reviewer)
    change = _file(agent, second, requester)
    services.change_request_approve(change=change, reviewer=reviewer, comment="fine")
    client = Client()
    client.force_login(second_reviewer)
    url = reverse("admin:promptctl_changerequest_change", args=[change.pk])
    assert client.get(url).status_code == 200  # warm caches (content types, permissions)
    with django_assert_max_num_queries(24):  # 19 measured: the page, the pin, the buttons' checks
        page = client.get(url).content.decode()
    assert 'id="action-apply"' in page and 'id="action-reject"' in page and "1 of 1 approvals" in page
