"""The promotion gate: production promotions need eval evidence; regressions need an explicit, extra-approved accept."""

import pytest

from evals import services
from evals.models import EvalRun
from promptctl import services as promptctl_services
from promptctl.errors import DomainError
from promptctl.models import ChangeRequest, Pin
from tests.evals.support import TICKETS, execute_all

pytestmark = pytest.mark.usefixtures("generous_budget")


def _run(version, testset_version):
    run = services.eval_run_start(agent_version=version, testset_version=testset_version)
    run = execute_all(run)
    assert run.status == EvalRun.Status.FINISHED
    return run


def _request(agent, number, requester, **extra):
    return promptctl_services.change_request_create(
        agent=agent, kind="promote", target_number=number, reason=f"ship v{number}", actor=requester, **extra
    )


@pytest.fixture
def production_v1(agent, versions, gating_set, requester, reviewer):
    """v1 promoted to production with its run as first-promotion evidence; returns that run."""
    run = _run(versions[0], gating_set)
    change = _request(agent, versions[0].number, requester, evidence_ref=f"run:{run.pk}")
    assert (change.evidence_type, change.evidence_id) == ("run", run.pk)
    assert change.evidence["summary"].startswith(f"run #{run.pk}: v{versions[0].number} on support-tickets")
    promptctl_services.change_request_approve(change=change, reviewer=reviewer)
    promptctl_services.change_request_apply(change=change, actor=reviewer)
    return run


def test_first_promotion_needs_a_finished_run_of_the_candidate(agent, versions, gating_set, requester):
    v1, v2 = versions
    with pytest.raises(DomainError) as refusal:
        _request(agent, v1.number, requester)
    assert "must carry eval evidence" in str(refusal.value)
    assert f"promptctl eval run --agent {agent.name} --version {v1.number}" in str(refusal.value)
    other_run = _run(v2, gating_set)
    with pytest.raises(DomainError, match="not the version being promoted"):
        _request(agent, v1.number, requester, evidence_ref=f"run:{other_run.pk}")
    queued = services.eval_run_start(agent_version=v1, testset_version=gating_set)
    with pytest.raises(DomainError, match="queued; evidence must be a finished run"):
        _request(agent, v1.number, requester, evidence_ref=f"run:{queued.pk}")
    with pytest.raises(DomainError, match="not a comparison or run id"):
        _request(agent, v1.number, requester, evidence_ref="looked fine to me")
    assert ChangeRequest.objects.count() == 0


def test_promotion_without_a_gating_set_is_refused(agent, versions, requester):
    with pytest.raises(DomainError, match="has none. Import one with"):
        _request(agent, versions[0].number, requester, evidence_ref="run:1")


def test_regressing_candidate_cannot_be_applied_without_the_accept_path(
    agent, versions, gating_set, requester, reviewer, second_reviewer, production_v1
):
    v1, v2 = versions
    candidate = _run(v2, gating_set)
    with pytest.raises(DomainError, match="a run alone is not enough"):
        _request(agent, v2.number, requester, evidence_ref=f"run:{candidate.pk}")
    comparison = services.comparison_create(baseline_run=production_v1, candidate_run=candidate)
    assert comparison.regressed
    # Filing with the regressed comparison and no accept reason is refused at once: it could be
    # approved but never applied. The CLI hears the flag to use, the web the field to fill in.
    with pytest.raises(DomainError) as refusal:
        _request(agent, v2.number, requester, evidence_ref=f"comparison:{comparison.pk}")
    message = str(refusal.value)
    assert "flags a regression (billing)" in message and "--accept-regression" in message
    flipped = [f["ticket"] for f in comparison.result["flips"] if f["direction"] == "right_to_wrong"]
    assert all(ticket in message for ticket in flipped)
    web = refusal.value.web_message()
    assert "Accept a flagged regression because" in web and "--" not in web
    assert refusal.value.fields == ("accept_regression_reason",)
    assert not ChangeRequest.objects.filter(target_version=v2).exists()
    assert Pin.objects.get(agent=agent, channel="production").version == v1

    change = _request(
        agent,
        v2.number,
        requester,
        evidence_ref=f"comparison:{comparison.pk}",
        accept_regression_reason="billing routing is fixed in the next version; api-platform needs this now",
    )
    assert change.approvals_required == agent.required_approvals + 1
    assert change.evidence["regressed"] is True and change.evidence["regressed_teams"] == ["billing"]
    assert "REGRESSED" in change.evidence["summary"] and flipped[0] in change.evidence["summary"]
    promptctl_services.change_request_approve(change=change, reviewer=reviewer)
    with pytest.raises(DomainError, match="not approved yet"):
        promptctl_services.change_request_apply(change=change, actor=reviewer)
    promptctl_services.change_request_approve(change=change, reviewer=second_reviewer)
    pin = promptctl_services.change_request_apply(change=change, actor=reviewer)
    assert pin.version == v2


def test_comparison_must_be_against_production_and_the_candidate(
    agent, versions, gating_set, requester, production_v1, reviewer, gatekeeper
):
    v1, v2 = versions
    v3 = promptctl_services.version_create(agent=agent, system_prompt=v1.system_prompt + "\nBe brief.", actor=requester)
    run2, run3 = _run(v2, gating_set), _run(v3, gating_set)
    v2_vs_v3 = services.comparison_create(baseline_run=run2, candidate_run=run3)
    with pytest.raises(DomainError, match="the baseline must be the current production version"):
        _request(agent, v3.number, requester, evidence_ref=f"comparison:{v2_vs_v3.pk}")
    v1_vs_v3 = services.comparison_create(baseline_run=production_v1, candidate_run=run3)
    with pytest.raises(DomainError, match=f"has v{v3.number} as its candidate"):
        _request(agent, v2.number, requester, evidence_ref=f"comparison:{v1_vs_v3.pk}")
    assert not v1_vs_v3.regressed
    with pytest.raises(DomainError, match="nothing to accept"):
        _request(
            agent,
            v3.number,
            requester,
            evidence_ref=f"comparison:{v1_vs_v3.pk}",
            accept_regression_reason="just in case",
        )
    change = _request(agent, v3.number, requester, evidence_ref=f"comparison:{v1_vs_v3.pk}")
    assert change.approvals_required == agent.required_approvals
    # The gating set changes after filing: the evidence no longer describes what promotions are judged on.
    changed = TICKETS.read_text().replace('"priority": "P0"', '"priority": "P1"')
    services.testset_import(name=gating_set.testset.name, data=changed, filename="fixed.jsonl", actor=gatekeeper)
    promptctl_services.change_request_approve(change=change, reviewer=reviewer)
    with pytest.raises(DomainError, match="is stale: ticket-triage's gating test set changed after it was filed"):
        promptctl_services.change_request_apply(change=change, actor=reviewer)
    assert Pin.objects.get(agent=agent).version == v1


def test_other_channels_and_rollbacks_are_not_gated(agent, versions, requester, reviewer):
    change = promptctl_services.change_request_create(
        agent=agent,
        kind="promote",
        target_number=versions[1].number,
        reason="try it",
        actor=requester,
        channel="staging",
    )
    promptctl_services.change_request_approve(change=change, reviewer=reviewer)
    pin = promptctl_services.change_request_apply(change=change, actor=reviewer)
    assert pin.channel == "staging" and change.evidence_type == ""
