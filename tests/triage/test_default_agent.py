"""The default agent of ``POST /api/v1/triage`` moves only by an approved change request (kind ``route``).

Saving a routing policy (service or admin) cannot switch it; a route request
is filed, approved by someone else, applied, and audited; the database still
lets no route request move a pin.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import DatabaseError, transaction
from django.db.models import F
from django.urls import reverse

from promptctl import services as change_services
from promptctl.errors import DomainError
from promptctl.models import AuditEvent, ChangeRequest, Pin
from tests.cli_support import token_env, token_secret_for
from tests.triage.support import ProductionAgent, ticket
from triage import services
from triage.models import RoutingPolicy


def _route(agent, people, **extra):
    return change_services.change_request_create(
        agent=agent, kind="route", target_number=None, reason="serve it by default", actor=people.requester, **extra
    )


def test_saving_a_routing_policy_cannot_switch_the_default(api, production, people):
    other = ProductionAgent(people, name="other", default=False)
    other.policy.is_default = True
    with pytest.raises(DomainError) as refusal:
        services.routing_policy_save(policy=other.policy, actor=people.admin)
    message = str(refusal.value)
    assert "moves only by an approved change request" in message
    assert "promptctl change request --agent other --kind route" in message
    production.policy.is_default = False
    with pytest.raises(DomainError, match="tried to stop ticket-triage the default"):
        services.routing_policy_save(policy=production.policy, actor=people.admin)
    fresh = RoutingPolicy(agent=other.agent, is_default=True)
    with pytest.raises(DomainError, match="moves only by an approved change request"):
        services.routing_policy_save(policy=fresh, actor=people.admin)
    assert list(RoutingPolicy.objects.filter(is_default=True).values_list("agent__name", flat=True)) == [
        "ticket-triage"
    ]
    assert api.post("/triage", ticket(1)).json()["agent"] == "ticket-triage"


def test_the_admin_shows_the_default_read_only_and_ignores_a_forged_is_default(client, production, people):
    """The change form offers no ``is_default`` field; a forged post that adds one changes the rest, never the default.

    The form is read-only for the default because the default moves only by an
    approved route request; a crafted request carrying the flag (the form does
    not offer it, so only a forged post can) must not switch it either.
    """
    other = ProductionAgent(people, name="other", default=False)
    client.force_login(people.admin)
    url = reverse("admin:triage_routingpolicy_change", args=[other.policy.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert 'name="is_default"' not in page.content.decode()
    assert "the default changes only by an approved change request" in page.content.decode()
    response = client.post(
        url,
        {
            "is_default": "on",
            "canary_max_invalid_rate": "0.2",
            "canary_max_error_rate": "0.1",
            "canary_min_requests": "20",
            "shadow_version": "",
            "shadow_percent": "0",
        },
        follow=True,
    )
    assert response.status_code == 200
    other.policy.refresh_from_db()
    assert other.policy.canary_max_invalid_rate == 0.2 and other.policy.is_default is False
    assert RoutingPolicy.objects.get(is_default=True).agent == production.agent


def test_an_approved_route_request_switches_the_default_and_is_audited(api, production, people):
    other = ProductionAgent(people, name="other", default=False)
    change = _route(other.agent, people)
    assert (change.kind, change.target_version.number, change.approvals_required) == ("route", other.v1, 1)
    assert change.evidence == {}
    with pytest.raises(DomainError, match="four-eyes"):
        change_services.change_request_approve(change=change, reviewer=people.requester)
    with pytest.raises(DomainError, match="not approved yet"):
        change_services.change_request_apply(change=change, actor=people.requester)
    assert api.post("/triage", ticket(1)).json()["agent"] == "ticket-triage"

    change_services.change_request_approve(change=change, reviewer=people.reviewer)
    pin = change_services.change_request_apply(change=change, actor=people.requester)
    assert pin.agent == other.agent and pin.revision == 1  # no pin moved
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.APPLIED
    assert "other is now the default agent of POST /api/v1/triage (was ticket-triage)" in change.status_reason
    assert RoutingPolicy.objects.get(is_default=True).agent == other.agent
    event = AuditEvent.objects.get(verb="routing.default", agent_id_ref=other.agent.pk)
    assert event.actor_username == "rita"
    assert event.before == {"default_agent": "ticket-triage"}
    assert event.after == {"default_agent": "other", "change": change.pk, "version": other.v1}
    assert api.post("/triage", ticket(2)).json()["agent"] == "other"

    with pytest.raises(DomainError, match="other is the default agent already"):
        _route(other.agent, people)


def test_route_requests_are_refused_when_they_cannot_apply(production, people):
    unpinned = change_services.agent_create(
        name="unpinned", model="claude-sonnet-4-6", system_prompt="x", actor=people.requester
    )
    with pytest.raises(DomainError, match="has no production pin, so it cannot serve as the default"):
        _route(unpinned, people)
    other = ProductionAgent(people, name="other", default=False)
    with pytest.raises(DomainError, match="on the production channel"):
        _route(other.agent, people, channel="staging")
    with pytest.raises(DomainError, match="leave out --to"):
        change_services.change_request_create(
            agent=other.agent, kind="route", target_number=other.v1 + 1000, reason="r", actor=people.requester
        )


def test_a_route_request_cannot_move_a_pin_in_the_database(production, people):
    other = ProductionAgent(people, name="other", default=False)
    change = _route(other.agent, people)
    change_services.change_request_approve(change=change, reviewer=people.reviewer)
    pin = Pin.objects.get(agent=other.agent, channel="production")
    with pytest.raises(DatabaseError), transaction.atomic():
        Pin.objects.filter(pk=pin.pk).update(change_id=change.pk, revision=F("revision") + 1)
    assert Pin.objects.get(pk=pin.pk).revision == pin.revision


def test_the_cli_files_and_applies_a_route_request(production, people):
    other = ProductionAgent(people, name="other", default=False)
    out = io.StringIO()
    with token_env(token_secret_for(people.requester)):
        call_command(
            "promptctl", "change", "request", "--agent", "other", "--kind", "route", "--reason", "serve it",
            "--as", "rita", stdout=out,
        )  # fmt: skip
    change = ChangeRequest.objects.get(kind="route", agent=other.agent)
    assert f"Filed change request #{change.pk}: route other/production → v{other.v1}" in out.getvalue()
    out = io.StringIO()
    with token_env(token_secret_for(people.reviewer)):
        call_command("promptctl", "change", "approve", str(change.pk), "--as", "victor", stdout=io.StringIO())
        call_command("promptctl", "change", "apply", str(change.pk), "--as", "victor", stdout=out)
    assert f"Applied change request #{change.pk}: other is now the default agent." in out.getvalue()
    assert RoutingPolicy.objects.get(is_default=True).agent == other.agent
