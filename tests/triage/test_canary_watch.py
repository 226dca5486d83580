"""The canary watch: production answers the canary's tickets too, and a canary that routes differently is ended.

The tutorial's v2 sends billing tickets that mention usage or quotas to
api-platform (on the emulator, 4 of the 5 billing tickets). Its replies are
valid, so the invalid-output limit never sees it; the disagreement limit
does. With the defaults (every valid canary reply compared, limit 20%
overall and per team, judged from the 10th compared call) it trips at the
first compared call where it can: the 10th, unless 8 of those 10 happened to
be the one billing ticket v2 still routes right. At 50% canary the 10th
canary call comes, on average, with the 20th call; the tests allow 50 calls
(the chance of fewer than 10 canary calls in 50 is about one in a million).
"""

from __future__ import annotations

import pytest
from django.db import DatabaseError, transaction
from django.test import Client
from django.urls import reverse

from promptctl.errors import DomainError
from promptctl.models import AuditEvent, ChangeRequest
from promptctl.selectors import agent_timeline
from tests.triage.support import V2, V_RENAMED, ticket
from triage import selectors, services
from triage.models import CanaryCheck, CanaryComparison, CanaryPolicy, TriageRequest

CALLS_WITHIN = 50
BILLING = range(5)  # the tutorial's billing tickets (TKT-1001..1005)
NOT_BILLING = range(5, 20)


def canary_policy(production, actor, **fields) -> CanaryPolicy:
    policy = selectors.canary_policy_for(agent=production.agent)
    for name, value in fields.items():
        setattr(policy, name, value)
    return services.canary_policy_save(policy=policy, actor=actor)


def send_until_tripped(api, capture, indexes, prefix: str, calls: int = CALLS_WITHIN) -> list[dict]:
    """Send tickets (cycling through ``indexes``) until a canary check exists; the answers, in order."""
    answers = []
    for n in range(calls):
        with capture(execute=True):
            answers.append(api.post("/triage", ticket(indexes[n % len(indexes)], request_key=f"{prefix}{n}")).json())
        if CanaryCheck.objects.exists():
            break
    return answers


def first_trip_point(comparisons: list[CanaryComparison], limit: float, minimum: int) -> int | None:
    """The number of compared calls at which the overall or a team's disagreement rate first crossed the limit."""
    overall = [0, 0]
    teams: dict[str, list[int]] = {}
    for count, comparison in enumerate(comparisons, start=1):
        for figures in (overall, teams.setdefault(comparison.team, [0, 0])):
            figures[0] += 1
            figures[1] += comparison.agrees is False
            if figures[0] >= minimum and figures[1] / figures[0] > limit:
                return count
    return None


@pytest.mark.slow
def test_a_v2_canary_misrouting_billing_tickets_files_a_rollback_within_50_calls(
    api, production, people, eager_tasks, django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    v2 = production.new_version(V2)
    canary_change = production.canary(v2, 50)

    answers = send_until_tripped(api, django_capture_on_commit_callbacks, BILLING, "billing-")

    check = CanaryCheck.objects.get()
    assert len(answers) <= CALLS_WITHIN
    canary_answers = [a for a in answers if a["canary"]]
    assert all(a["valid"] for a in answers), "v2's replies are valid: the invalid-output limit cannot see it"
    assert check.invalid == 0 and check.errors == 0 and check.requests == len(canary_answers)
    # Every valid canary reply was also answered by production (the default compare share is 100%).
    comparisons = list(CanaryComparison.objects.order_by("request_id"))
    assert [c.request_id for c in comparisons] == [a["request_id"] for a in canary_answers]
    assert {c.production_version.number for c in comparisons} == {production.v1}
    assert all(c.team == "billing" for c in comparisons), "production routes every billing ticket to billing"
    # It tripped at the first compared call where the rule allows it, and not before.
    assert check.compared == len(comparisons) == first_trip_point(comparisons, 0.2, 10) >= 10
    assert check.disagreements == sum(c.agrees is False for c in comparisons) > 0.2 * check.compared
    assert check.labels == {
        "billing": {
            "compared": check.compared,
            "disagreements": check.disagreements,
            "rate": round(check.disagreements / check.compared, 4),
        }
    }
    assert "disagreement (overall)" in check.tripped_by and "disagreement (team billing)" in check.tripped_by
    examples = TriageRequest.objects.filter(pk__in=check.examples)
    assert check.examples and all(r.canary and r.team == "api-platform" for r in examples)

    ending = check.end_change
    assert check.canary_change_id == canary_change.pk and not check.auto_ended
    assert ending.kind == ChangeRequest.Kind.ROLLBACK and ending.status == ChangeRequest.Status.PENDING
    assert ending.target_version.number == production.v1 and ending.approvals_required == 1
    assert ending.requested_by.username == services.SYSTEM_USERNAME
    reference = ending.evidence["reference"]
    assert f"disagreed with production on {check.disagreements} of {check.compared} compared" in reference
    assert f"billing {check.disagreements}/{check.compared}" in reference and "limit 20.0%" in reference
    assert f"#{check.examples[0]}" in reference
    assert "Approving and applying this request" in ending.reason
    # With the policy off, the canary keeps serving until a person approves.
    pin = production.agent.pins.get()
    assert pin.canary_version.number == v2 and pin.change_id == canary_change.pk
    event = AuditEvent.objects.get(verb="canary.check")
    assert event.actor_username == services.SYSTEM_USERNAME and event.after["end_change"] == ending.pk

    # More calls queue nothing new; one approval ends the canary.
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(6):
            api.post("/triage", ticket(n % 5, request_key=f"after-{n}"))
    assert CanaryCheck.objects.count() == 1
    change_services_approve_apply(ending, people)
    after = [api.post("/triage", ticket(n % 5, request_key=f"billing-{n}")).json() for n in range(6)]
    assert {a["version"] for a in after} == {production.v1}

    # The admin shows the check's figures and every comparison, in a fixed number of queries.
    client = Client()
    client.force_login(people.admin)
    with django_assert_max_num_queries(12):
        checks = client.get(reverse("admin:triage_canarycheck_changelist"))
    assert (
        checks.status_code == 200 and f"{check.disagreements} of {check.compared} compared".encode() in checks.content
    )
    with django_assert_max_num_queries(12):
        listing = client.get(reverse("admin:triage_canarycomparison_changelist"))
    assert listing.status_code == 200 and listing.content.count(b"api-platform/") >= check.disagreements


def change_services_approve_apply(change, people) -> None:
    from promptctl import services as change_services

    change_services.change_request_approve(change=change, reviewer=people.reviewer)
    change_services.change_request_apply(change=change, actor=people.reviewer)


@pytest.mark.slow
def test_with_canary_auto_end_on_promptctl_returns_the_pin_to_production_itself(
    api, production, people, eager_tasks, django_capture_on_commit_callbacks
):
    canary_policy(production, people.admin, auto_end=True)
    v2 = production.new_version(V2)
    canary_change = production.canary(v2, 50)

    answers = send_until_tripped(api, django_capture_on_commit_callbacks, BILLING, "billing-")

    check = CanaryCheck.objects.get()
    assert len(answers) <= CALLS_WITHIN and check.auto_ended
    ending = check.end_change
    assert ending.status == ChangeRequest.Status.APPLIED
    assert ending.requested_by.username == services.SYSTEM_USERNAME
    assert "standing canary_auto_end policy (granted by ada)" in ending.reason
    (approval,) = ending.approvals.all()
    assert approval.reviewer.username == services.AUTO_END_USERNAME
    assert "standing approval" in approval.comment and "granted by ada" in approval.comment
    pin = production.agent.pins.get()
    assert pin.version.number == production.v1 and pin.canary_version is None and pin.change_id == ending.pk

    # The record: ada granted it (an audited policy change); promptctl's own accounts ended the canary.
    events = {e.verb: e for e in AuditEvent.objects.filter(sequence__gt=0).order_by("sequence")}
    granted = events["canary_policy.update"]
    assert granted.actor_username == "ada" and granted.after["auto_end"] is True
    assert granted.after["auto_end_granted_by"] == "ada"
    assert events["approval.approve"].actor_username == services.AUTO_END_USERNAME
    assert events["pin.move"].actor_username == services.SYSTEM_USERNAME
    assert events["pin.move"].after["version"] == production.v1 and events["pin.move"].after["canary_version"] is None
    auto = events["canary.auto_end"]
    assert auto.actor_username == services.SYSTEM_USERNAME and auto.after["standing_policy_granted_by"] == "ada"
    assert auto.after["end_change"] == ending.pk and canary_change.pk != ending.pk
    timeline = [e.summary for e in agent_timeline(agent=production.agent) if e.kind == "canary check"]
    assert timeline == [
        f"{check.summary()}; ended the canary under the standing auto-end policy (change request #{ending.pk})"
    ]

    after = [api.post("/triage", ticket(n % 5, request_key=f"billing-{n}")).json() for n in range(6)]
    assert {a["version"] for a in after} == {production.v1} and not any(a["canary"] for a in after)

    # The standing approval is for promptctl's own canary rollbacks only: the database refuses any other use.
    from promptctl import services as change_services

    request = change_services.change_request_create(
        agent=production.agent,
        kind="canary",
        target_number=v2,
        reason="again",
        actor=people.requester,
        canary_percent=5,
    )
    with pytest.raises(DatabaseError, match="promptctl-auto-end approves only"), transaction.atomic():
        change_services.change_request_approve(change=request, reviewer=approval.reviewer)
    assert not request.approvals.exists()


def test_auto_end_also_ends_a_canary_over_its_invalid_output_limit(
    api, production, people, eager_tasks, django_capture_on_commit_callbacks
):
    canary_policy(production, people.admin, auto_end=True)
    production.policy.canary_min_requests = 5
    services.routing_policy_save(policy=production.policy, actor=people.admin)
    production.canary(production.new_version(V_RENAMED), 50)
    answers = send_until_tripped(api, django_capture_on_commit_callbacks, NOT_BILLING, "renamed-")
    check = CanaryCheck.objects.get()
    assert check.tripped_by == "invalid output" and check.compared == 0 and check.auto_ended
    assert sum(not a["valid"] for a in answers) == check.invalid == check.requests == 5
    pin = production.agent.pins.get()
    assert pin.canary_version is None and pin.version.number == production.v1 and pin.change_id == check.end_change_id


@pytest.mark.slow
def test_tickets_on_which_both_versions_agree_do_not_trip_it(
    api, production, people, eager_tasks, django_capture_on_commit_callbacks
):
    v2 = production.new_version(V2)
    production.canary(v2, 50)
    indexes = list(NOT_BILLING)
    with django_capture_on_commit_callbacks(execute=True):
        answers = [api.post("/triage", ticket(indexes[n % 15], request_key=f"other-{n}")).json() for n in range(60)]
    canary_ids = [a["request_id"] for a in answers if a["canary"]]
    comparisons = CanaryComparison.objects.all()
    assert len(canary_ids) >= 10 and sorted(c.request_id for c in comparisons) == sorted(canary_ids)
    assert all(c.agrees for c in comparisons)
    watch = selectors.canary_watch(agent_id=production.agent.pk, pin_revision=production.agent.pins.get().revision)
    assert watch.compared == len(canary_ids) and watch.disagreements == 0 and watch.tripped() == []
    assert not CanaryCheck.objects.exists()


def test_compare_share_zero_turns_the_disagreement_watch_off(
    api, production, people, eager_tasks, django_capture_on_commit_callbacks
):
    canary_policy(production, people.admin, compare_percent=0)
    production.canary(production.new_version(V2), 50)
    with django_capture_on_commit_callbacks(execute=True):
        answers = [api.post("/triage", ticket(n % 5, request_key=f"b{n}")).json() for n in range(12)]
    assert any(a["canary"] for a in answers)
    assert not CanaryComparison.objects.exists() and not CanaryCheck.objects.exists()


def test_canary_policy_changes_are_permission_checked_and_audited(production, people):
    with pytest.raises(DomainError, match="change an agent's canary policy"):
        canary_policy(production, people.reviewer, disagreement_limit=0.1)
    with pytest.raises(DomainError, match="between 0 and 1"):
        canary_policy(production, people.admin, disagreement_limit=1.5)
    policy = canary_policy(production, people.admin, disagreement_limit=0.1, min_compared=20)
    event = AuditEvent.objects.filter(verb="canary_policy.update").get()
    assert event.actor_username == "ada" and event.before == {}
    assert event.after["disagreement_limit"] == 0.1 and event.after["auto_end"] is False
    assert policy.auto_end_granted_by is None

    # Only an eligible reviewer of the agent may grant the standing approval.
    production.agent.approver_group = "billing-leads"
    production.agent.save(update_fields=["approver_group"])
    with pytest.raises(DomainError, match="only a member of 'billing-leads'"):
        canary_policy(production, people.admin, auto_end=True)
    assert not CanaryPolicy.objects.get().auto_end


def trip_by_hand(api, production, prefix: str) -> CanaryCheck | None:
    """Two canary calls on billing tickets v2 misroutes, compared by calling the service, then the check."""
    for n in range(40):
        answer = api.post("/triage", ticket(n % 4, request_key=f"{prefix}{n}")).json()
        if answer["canary"]:
            services.canary_compare(request_id=answer["request_id"])
        if CanaryComparison.objects.count() >= 2:
            break
    return services.canary_end(agent_id=production.agent.pk, pin_revision=production.agent.pins.get().revision)


def test_a_lapsed_standing_approval_only_files_the_rollback(production, people, api):
    from django.contrib.auth.models import Group

    canary_policy(production, people.admin, auto_end=True, min_compared=2)
    production.canary(production.new_version(V2), 50)
    people.admin.groups.remove(Group.objects.get(name="reviewers"))
    check = trip_by_hand(api, production, "lapse-")
    assert check is not None and not check.auto_ended
    assert check.end_change.status == ChangeRequest.Status.PENDING
    assert "standing approval has lapsed" in check.end_change.reason
    assert production.agent.pins.get().canary_version is not None


def test_an_auto_end_written_around_the_service_is_not_acted_on(production, people, api):
    from django.utils import timezone

    canary_policy(production, people.admin, min_compared=2)
    # An insider with a shell turns auto_end on in the row itself: no audited policy change says so.
    CanaryPolicy.objects.filter(agent=production.agent).update(
        auto_end=True, auto_end_granted_by=people.admin, auto_end_granted_at=timezone.now()
    )
    production.canary(production.new_version(V2), 50)
    check = trip_by_hand(api, production, "around-")
    assert check is not None and not check.auto_ended
    assert check.end_change.status == ChangeRequest.Status.PENDING
    assert "written around canary_policy_save" in check.end_change.reason
    assert AuditEvent.objects.get(verb="canary.check").after["auto_end_refused"].startswith("automatic ending is on")
