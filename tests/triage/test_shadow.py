"""Shadow mode: a candidate answers sampled live tickets in the background; only promptctl sees its answers."""

from __future__ import annotations

import pytest

from evals import services as eval_services
from promptctl import services as change_services
from promptctl.selectors import agent_timeline
from tests.triage.support import TICKETS, V2, V_RENAMED, eval_run_now, ticket
from triage import selectors, services
from triage.models import Outcome, ShadowResult, TriageRequest


def shadow(production, people, version_number: int, percent: int = 100) -> None:
    production.policy.shadow_version = production.agent.versions.get(number=version_number)
    production.policy.shadow_percent = percent
    services.routing_policy_save(policy=production.policy, actor=people.admin)


@pytest.mark.slow
def test_shadow_candidate_answers_every_sampled_ticket_without_touching_responses(
    api, production, people, eager_tasks, django_capture_on_commit_callbacks
):
    v2 = production.new_version(V2)
    shadow(production, people, v2)
    with django_capture_on_commit_callbacks(execute=True):
        answers = [api.post("/triage", ticket(index)).json() for index in range(len(TICKETS))]
    assert all(a["version"] == production.v1 and not a["canary"] and a["valid"] for a in answers)

    results = {r.request_id: r for r in ShadowResult.objects.select_related("request", "version")}
    assert set(results) == {a["request_id"] for a in answers}
    assert {r.version.number for r in results.values()} == {v2}
    disagreeing = {pk for pk, r in results.items() if (r.team, r.priority) != (r.request.team, r.request.priority)}
    assert disagreeing, "v2's routing rule sends billing tickets about usage to api-platform"
    assert {pk for pk, r in results.items() if r.agrees is False} == disagreeing
    summary = selectors.shadow_summary(version_id=production.agent.versions.get(number=v2).pk)
    assert summary.total == summary.compared == len(TICKETS)
    assert summary.disagreements == len(disagreeing) and summary.invalid == 0 and summary.errors == 0
    assert summary.disagreement_rate == pytest.approx(len(disagreeing) / len(TICKETS))
    assert {r.request_id for r in selectors.shadow_disagreements(version_id=summary.version_id)} == disagreeing

    # The candidate's record is on the agent's timeline, next to its change requests.
    entries = [e.summary for e in agent_timeline(agent=production.agent) if e.kind == "shadow"]
    assert entries and f"version {v2}:" in entries[0] and f"{len(disagreeing)} of {len(TICKETS)}" in entries[0]

    # A later promotion request for the candidate freezes its shadow record with the eval evidence.
    candidate = production.agent.versions.get(number=v2)
    eval_run_now(version=candidate, testset_version=production.testset_version, actor=people.requester)
    comparison = eval_services.comparison_for_versions(
        agent=production.agent, baseline_number=production.v1, candidate_number=v2
    )
    change = change_services.change_request_create(
        agent=production.agent,
        kind="promote",
        target_number=v2,
        reason="shadowed for a while",
        actor=people.requester,
        evidence_ref=f"comparison:{comparison.pk}",
        # a regressed comparison is refused at filing unless accepted (this test is about the shadow record)
        accept_regression_reason="the shadow record is what is under test" if comparison.regressed else "",
    )
    assert change.evidence["shadow"]["disagreements"] == len(disagreeing)
    assert change.evidence["shadow"]["shadow_runs"] == len(TICKETS)
    assert "Shadow:" in change.evidence["summary"]


def test_shadow_records_the_candidates_invalid_output_rate(
    api, production, people, eager_tasks, django_capture_on_commit_callbacks
):
    renamed = production.new_version(V_RENAMED)
    shadow(production, people, renamed)
    with django_capture_on_commit_callbacks(execute=True):
        answers = [api.post("/triage", ticket(index)).json() for index in range(5)]
    assert all(a["valid"] for a in answers), "production answers stay valid"
    summary = selectors.shadow_summary(version_id=production.agent.versions.get(number=renamed).pk)
    assert summary.total == 5 and summary.invalid == 5 and summary.invalid_rate == 1.0
    assert summary.compared == 0 and summary.disagreement_rate is None
    assert all(r.outcome == Outcome.INVALID and "missing 'team'" in r.problem for r in ShadowResult.objects.all())
    assert services.shadow_evidence(version=production.agent.versions.get(number=renamed))["invalid_rate"] == 1.0


def test_sampling_share_and_redelivery(api, production, people, eager_tasks, django_capture_on_commit_callbacks):
    v2 = production.new_version(V2)
    shadow(production, people, v2, percent=0)
    with django_capture_on_commit_callbacks(execute=True):
        api.post("/triage", ticket(0))
    assert not ShadowResult.objects.exists() and TriageRequest.objects.get().shadow_version is None

    shadow(production, people, v2, percent=100)
    with django_capture_on_commit_callbacks(execute=True):
        request_id = api.post("/triage", ticket(1)).json()["request_id"]
    first = ShadowResult.objects.get(request_id=request_id)
    assert services.shadow_run(request_id=request_id) == first  # a redelivered task finds the result
    assert ShadowResult.objects.count() == 1


def test_a_shadow_version_must_belong_to_the_agent(production, people):
    from promptctl import services as change_services
    from promptctl.errors import DomainError

    other = change_services.agent_create(
        name="other-agent", model="claude-sonnet-4-6", system_prompt=V2, actor=people.requester
    )
    production.policy.shadow_version = other.versions.get()
    production.policy.shadow_percent = 10
    with pytest.raises(DomainError, match="must be a version of ticket-triage"):
        services.routing_policy_save(policy=production.policy, actor=people.admin)
