"""The gating test set is a gate input: its writes are permission-checked and audited, evidence names its
version, a request filed before it changed is stale, and reviewers see how it moved since production.
"""

import io
import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from evals import services
from evals.models import EvalRun, TestSet
from promptctl import services as promptctl_services
from promptctl.errors import DomainError
from promptctl.models import AuditEvent, ChangeRequest, Pin
from tests.cli_support import token_env, token_secret_for
from tests.evals.support import TICKETS, execute_all

pytestmark = pytest.mark.usefixtures("generous_budget")


def _run(version, testset_version):
    run = execute_all(services.eval_run_start(agent_version=version, testset_version=testset_version))
    assert run.status == EvalRun.Status.FINISHED
    return run


def _production(agent, version, testset_version, requester, reviewer):
    run = _run(version, testset_version)
    change = promptctl_services.change_request_create(
        agent=agent, kind="promote", target_number=version.number, reason="v1", actor=requester,
        evidence_ref=f"run:{run.pk}",
    )  # fmt: skip
    promptctl_services.change_request_approve(change=change, reviewer=reviewer)
    promptctl_services.change_request_apply(change=change, actor=reviewer)
    assert change.__class__.objects.get(pk=change.pk).evidence["gating_set"]["version_id"] == testset_version.pk
    return run


def _tickets_without(ids, relabel=None) -> str:
    lines = []
    for line in TICKETS.read_text().splitlines():
        ticket = json.loads(line)
        if ticket["id"] in ids:
            continue
        if relabel and ticket["id"] == relabel[0]:
            ticket["team"] = relabel[1]
        lines.append(json.dumps(ticket))
    return "\n".join(lines) + "\n"


def test_gating_set_writes_need_the_permission_and_are_audited(agent, gating_set, requester, gatekeeper):
    event = AuditEvent.objects.get(verb="testset.gating")
    assert event.actor_username == "gina" and event.before is None
    assert event.after["testset"] == "support-tickets" and event.after["case_count"] == 20
    assert len(event.after["added"]) == 20 and event.after["removed"] == []

    smaller = _tickets_without({"TKT-1002", "TKT-1003"}, relabel=("TKT-1004", "auth"))
    for actor in (None, requester):
        with pytest.raises(DomainError, match="needs the evals.change_gating_testset permission"):
            services.testset_import(name="support-tickets", data=smaller, filename="s.jsonl", actor=actor)
    assert gating_set.testset.versions.count() == 1
    # The same contents again change nothing, so they need no permission.
    again = services.testset_import(name="support-tickets", data=TICKETS.read_bytes(), filename="t.jsonl")
    assert not again.created

    newer = services.testset_import(name="support-tickets", data=smaller, filename="s.jsonl", actor=gatekeeper)
    event = AuditEvent.objects.get(verb="testset.gating_version")
    assert event.actor_username == "gina" and event.agent_id_ref == agent.pk
    assert event.before == {"testset": "support-tickets", "version": 1, "case_count": 20}
    assert (event.after["version"], event.after["case_count"]) == (newer.version.number, 18)
    assert event.after["removed"] == ["TKT-1002", "TKT-1003"] and event.after["added"] == []
    assert event.after["relabelled"][0]["ticket"] == "TKT-1004" and event.after["relabelled"][0]["to"].startswith(
        "auth/"
    )

    other = services.testset_import(name="other", data=TICKETS.read_bytes(), filename="t.jsonl", agent=agent)
    with pytest.raises(DomainError, match="rita may not choose the gating test set of ticket-triage"):
        services.testset_gating_set(testset=other.testset, actor=requester)
    with pytest.raises(DomainError, match="rita may not change the gating test set"):
        services.testset_import(
            name="other", data=TICKETS.read_bytes(), filename="t.jsonl", gating=True, actor=requester
        )
    assert TestSet.objects.get(agent=agent, gating=True).name == "support-tickets"
    services.testset_gating_set(testset=other.testset, actor=gatekeeper)
    switch = AuditEvent.objects.filter(verb="testset.gating").latest("sequence")
    assert switch.before == {"testset": "support-tickets", "version": 2, "case_count": 18}
    assert switch.after["testset"] == "other" and switch.after["added"] == ["TKT-1002", "TKT-1003"]


def test_cli_import_of_a_gating_set_names_the_acting_user(agent, gating_set, requester, gatekeeper, tmp_path):
    path = tmp_path / "smaller.jsonl"
    path.write_text(_tickets_without({"TKT-1002"}))
    stderr = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("promptctl", "testset", "import", str(path), "--name", "support-tickets", stderr=stderr)
    assert "An anonymous user may not change the gating test set" in stderr.getvalue()
    with token_env(token_secret_for(gatekeeper)):
        call_command(
            "promptctl",
            "testset",
            "import",
            str(path),
            "--name",
            "support-tickets",
            "--as",
            "gina",
            stdout=io.StringIO(),
        )
    assert AuditEvent.objects.get(verb="testset.gating_version").after["removed"] == ["TKT-1002"]


def test_a_request_filed_before_the_gating_set_changed_is_stale(
    agent, versions, gating_set, requester, reviewer, gatekeeper
):
    v1, v2 = versions
    baseline = _production(agent, v1, gating_set, requester, reviewer)
    comparison = services.comparison_create(baseline_run=baseline, candidate_run=_run(v2, gating_set))
    change = promptctl_services.change_request_create(
        agent=agent, kind="promote", target_number=v2.number, reason="v2", actor=requester,
        evidence_ref=f"comparison:{comparison.pk}", accept_regression_reason="billing is handled by hand",
    )  # fmt: skip
    recorded = change.evidence["gating_set"]
    assert (recorded["testset"], recorded["version"], recorded["version_id"]) == ("support-tickets", 1, gating_set.pk)
    assert change.evidence["scored_on"]["version_id"] == gating_set.pk
    promptctl_services.change_request_approve(change=change, reviewer=reviewer)
    promptctl_services.change_request_approve(change=change, reviewer=gatekeeper)

    other = services.testset_import(
        name="other",
        data=_tickets_without({"TKT-1002"}),
        filename="o.jsonl",
        agent=agent,
        gating=True,
        actor=gatekeeper,
    )
    with pytest.raises(DomainError) as refusal:
        promptctl_services.change_request_apply(change=change, actor=reviewer)
    message = str(refusal.value)
    assert (
        f"change request #{change.pk} is stale: ticket-triage's gating test set changed after it was filed" in message
    )
    assert "scored on support-tickets v1 (20 tickets)" in message
    assert f"another set, other v{other.version.number} (19 tickets), changed by gina" in message
    assert "re-run both versions on the current gating set" in message and "file again" in message
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.SUPERSEDED and "is stale" in change.status_reason
    assert Pin.objects.get(agent=agent, channel="production").version == v1


def test_reviewers_see_how_the_gating_set_moved_since_production(
    agent, versions, gating_set, requester, reviewer, gatekeeper, admin_client
):
    v1, v2 = versions
    baseline = _production(agent, v1, gating_set, requester, reviewer)
    full = services.comparison_create(baseline_run=baseline, candidate_run=_run(v2, gating_set))
    flipped = sorted(f["ticket"] for f in full.result["flips"] if f["direction"] == "right_to_wrong")
    assert full.regressed and flipped
    # Someone drops the billing tickets v2 gets wrong: the comparison on the new contents passes.
    trimmed = services.testset_import(
        name="support-tickets", data=_tickets_without(set(flipped)), filename="trimmed.jsonl", actor=gatekeeper
    ).version
    comparison = services.comparison_create(baseline_run=_run(v1, trimmed), candidate_run=_run(v2, trimmed))
    assert not comparison.regressed
    change = promptctl_services.change_request_create(
        agent=agent, kind="promote", target_number=v2.number, reason="v2", actor=requester,
        evidence_ref=f"comparison:{comparison.pk}",
    )  # fmt: skip
    changed = change.evidence["gate_inputs_changed"]
    assert changed["removed"] == flipped and changed["added"] == [] and changed["changed_by"] == "gina"
    assert (changed["from"]["version"], changed["to"]["version"]) == (1, 2)
    summary = changed["summary"]
    assert f"since production v{v1.number} was promoted" in summary and "last changed by gina" in summary
    assert all(ticket in summary for ticket in flipped)

    page = admin_client.get(reverse("admin:promptctl_changerequest_change", args=[change.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert "Gating set changed" in text and "last changed by gina" in text and flipped[0] in text

    stdout = io.StringIO()
    call_command("promptctl", "change", "show", str(change.pk), stdout=stdout)
    shown = stdout.getvalue()
    assert "WARNING: The gating test set changed since production" in shown and flipped[0] in shown
