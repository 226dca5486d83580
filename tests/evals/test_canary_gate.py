"""The canary share gate: a production canary above the agent's threshold needs a promotion's evidence.

A 99 % canary of the regressed tutorial v2 serves nearly every call; it must
meet the promotion gate (comparison evidence, regression accepted with a
reason and one more approval). At or below the threshold (default 10 %) a
canary is filed as before, with no evidence.
"""

import pytest

from evals import services
from evals.models import EvalRun
from promptctl import services as promptctl_services
from promptctl.errors import DomainError
from promptctl.models import AuditEvent, ChangeRequest, Pin
from tests.evals.support import TICKETS, execute_all

pytestmark = pytest.mark.usefixtures("generous_budget")


def _run(version, testset_version):
    run = execute_all(services.eval_run_start(agent_version=version, testset_version=testset_version))
    assert run.status == EvalRun.Status.FINISHED
    return run


def _production(agent, version, testset_version, requester, reviewer):
    """``version`` promoted to production with its run as evidence; returns that run."""
    run = _run(version, testset_version)
    change = promptctl_services.change_request_create(
        agent=agent,
        kind="promote",
        target_number=version.number,
        reason="first",
        actor=requester,
        evidence_ref=f"run:{run.pk}",
    )
    promptctl_services.change_request_approve(change=change, reviewer=reviewer)
    promptctl_services.change_request_apply(change=change, actor=reviewer)
    return run


def _canary(agent, number, percent, requester, **extra):
    return promptctl_services.change_request_create(
        agent=agent,
        kind="canary",
        target_number=number,
        reason=f"canary v{number} at {percent}%",
        actor=requester,
        canary_percent=percent,
        **extra,
    )


def test_a_99_percent_canary_of_a_regressed_version_needs_the_promotion_gate(
    agent, versions, gating_set, requester, reviewer, second_reviewer
):
    v1, v2 = versions
    baseline = _production(agent, v1, gating_set, requester, reviewer)

    with pytest.raises(DomainError) as refusal:
        _canary(agent, v2.number, 99, requester)
    message = str(refusal.value)
    assert "99% production canary of ticket-triage (above its 10% threshold" in message
    assert "must carry eval evidence" in message and "promptctl eval compare" in message
    assert not ChangeRequest.objects.filter(kind="canary").exists()

    comparison = services.comparison_create(baseline_run=baseline, candidate_run=_run(v2, gating_set))
    assert comparison.regressed
    # A regression the request does not accept is refused when filing (it could never be applied).
    with pytest.raises(DomainError, match=r"flags a regression \(billing\).*does not accept it"):
        _canary(agent, v2.number, 99, requester, evidence_ref=f"comparison:{comparison.pk}")
    assert not ChangeRequest.objects.filter(kind="canary").exists()
    assert Pin.objects.get(agent=agent, channel="production").canary_version is None

    accepted = _canary(
        agent,
        v2.number,
        99,
        requester,
        evidence_ref=f"comparison:{comparison.pk}",
        accept_regression_reason="billing is watched by hand during the canary",
    )
    assert accepted.approvals_required == agent.required_approvals + 1
    promptctl_services.change_request_approve(change=accepted, reviewer=reviewer)
    with pytest.raises(DomainError, match="not approved yet"):
        promptctl_services.change_request_apply(change=accepted, actor=reviewer)
    promptctl_services.change_request_approve(change=accepted, reviewer=second_reviewer)
    pin = promptctl_services.change_request_apply(change=accepted, actor=reviewer)
    assert (pin.version, pin.canary_version, pin.canary_percent) == (v1, v2, 99)


def test_a_canary_at_or_below_the_threshold_needs_no_evidence(agent, versions, gating_set, requester, reviewer):
    v1, v2 = versions
    _production(agent, v1, gating_set, requester, reviewer)
    for percent in (5, 10):
        change = _canary(agent, v2.number, percent, requester)
        assert change.evidence == {} and change.approvals_required == agent.required_approvals
        promptctl_services.change_request_withdraw(change=change, actor=requester)
    change = _canary(agent, v2.number, 5, requester)
    promptctl_services.change_request_approve(change=change, reviewer=reviewer)
    pin = promptctl_services.change_request_apply(change=change, actor=reviewer)
    assert (pin.canary_version, pin.canary_percent) == (v2, 5)


def test_the_threshold_is_agent_policy_changed_by_an_admin_and_audited(
    agent, versions, gating_set, requester, reviewer, gatekeeper
):
    v1, v2 = versions
    _production(agent, v1, gating_set, requester, reviewer)
    with pytest.raises(DomainError, match="change an agent's approval policy"):
        promptctl_services.agent_policy_update(agent=agent, actor=requester, canary_evidence_above_percent=99)
    with pytest.raises(DomainError, match="0 to 99 percent"):
        promptctl_services.agent_policy_update(agent=agent, actor=gatekeeper, canary_evidence_above_percent=100)
    promptctl_services.agent_policy_update(agent=agent, actor=gatekeeper, canary_evidence_above_percent=0)
    event = AuditEvent.objects.filter(verb="agent.policy").latest("sequence")
    assert event.actor_username == gatekeeper.username
    assert (event.before["canary_evidence_above_percent"], event.after["canary_evidence_above_percent"]) == (10, 0)
    with pytest.raises(DomainError, match="5% production canary of ticket-triage \\(above its 0% threshold"):
        _canary(agent, v2.number, 5, requester)


def test_a_policy_loosened_after_filing_does_not_ungate_the_request(
    agent, versions, gating_set, requester, reviewer, gatekeeper
):
    v1, v2 = versions
    baseline = _production(agent, v1, gating_set, requester, reviewer)
    comparison = services.comparison_create(baseline_run=baseline, candidate_run=_run(v2, gating_set))
    change = _canary(
        agent,
        v2.number,
        50,
        requester,
        evidence_ref=f"comparison:{comparison.pk}",
        accept_regression_reason="billing is watched by hand during the canary",
    )
    assert change.evidence["gate"] == "canary"
    promptctl_services.agent_policy_update(agent=agent, actor=gatekeeper, canary_evidence_above_percent=99)
    promptctl_services.change_request_approve(change=change, reviewer=reviewer)
    promptctl_services.change_request_approve(change=change, reviewer=gatekeeper)
    # Still judged as gated: the gating set changing after filing makes it stale (an ungated canary would apply).
    lines = TICKETS.read_text().splitlines()
    services.testset_import(
        name="support-tickets", data="\n".join(lines[1:]) + "\n", filename="s.jsonl", actor=gatekeeper
    )
    with pytest.raises(DomainError, match="stale"):
        promptctl_services.change_request_apply(change=change, actor=reviewer)
