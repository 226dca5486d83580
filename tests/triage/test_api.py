"""The triage API in-process through the production ASGI application, against the emulator."""

from __future__ import annotations

import json

import pytest

from managed_agents.verdicts import allowed_labels
from tests.triage.support import V2, Api, ProductionAgent, ticket
from triage import services
from triage.models import Outcome, TriageRequest


def test_default_agent_answers_with_the_pinned_version_and_logs_the_call(api, production, emulator):
    response = api.post("/triage", ticket(0, request_key="customer-17"))
    assert response.status_code == 200, response.content
    answer = response.json()
    assert (
        answer["agent"] == "ticket-triage" and answer["version"] == production.v1 and answer["channel"] == "production"
    )
    assert answer["canary"] is False and answer["valid"] is True
    assert answer["team"] in allowed_labels(production.agent.versions.get(number=production.v1).system_prompt)["team"]
    assert answer["priority"] in ("P1", "P2", "P3") and answer["session_id"] and answer["latency_ms"] >= 0
    logged = TriageRequest.objects.get(pk=answer["request_id"])
    assert (logged.team, logged.priority, logged.session_id) == (
        answer["team"],
        answer["priority"],
        answer["session_id"],
    )
    assert logged.version.number == production.v1 and logged.canary is False and logged.outcome == Outcome.OK
    assert logged.request_key == "customer-17" and logged.subject == ticket(0)["subject"]
    assert emulator.stats()["sessions"]["unarchived"] == 0


def test_named_agent_route_and_unknown_agent(api, production):
    response = api.post("/agents/ticket-triage/triage", ticket(3))
    assert response.status_code == 200 and response.json()["agent"] == "ticket-triage"
    missing = api.post("/agents/no-such-agent/triage", ticket(3))
    assert missing.status_code == 404
    assert "no agent named 'no-such-agent'" in missing.json()["detail"]
    odd = api.post("/agents/Not_A_Name/triage", ticket(3))
    assert odd.status_code in (404, 422) and odd.json()["detail"]


def test_agent_without_a_pin_is_409_with_next_steps(api, production, people):
    from promptctl import services as change_services

    change_services.agent_create(name="unpinned", model="claude-sonnet-4-6", system_prompt=V2, actor=people.requester)
    response = api.post("/agents/unpinned/triage", ticket(1))
    assert response.status_code == 409
    assert "has no production version pinned" in response.json()["detail"]


def test_no_default_agent_is_404_naming_the_fix(emulator, people, quiet_limits):
    ProductionAgent(people, default=False)
    secret = services.api_key_create(name="helpdesk", actor=people.admin, all_agents=True).secret
    response = Api(secret).post("/triage", ticket(1))
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert "No default agent" in detail and "--kind route" in detail


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer pctl_not-a-real-key", "Basic dXNlcjpwYXNz", "pctl_raw"])
def test_requests_without_a_valid_key_are_401(production, header):
    headers = {"Authorization": header} if header else {}
    response = Api(None).request(
        "POST",
        "/api/v1/triage",
        content=json.dumps(ticket(0)).encode(),
        headers={"Content-Type": "application/json", **headers},
    )
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "key" in response.json()["detail"].lower()
    assert TriageRequest.objects.count() == 0


def test_key_scoped_to_another_agent_is_403(production, people):
    from promptctl import services as change_services

    change_services.agent_create(
        name="other-agent", model="claude-sonnet-4-6", system_prompt=V2, actor=people.requester
    )
    scoped = services.api_key_create(name="other-only", actor=people.admin, agent_names=["other-agent"])
    response = Api(scoped.secret).post("/triage", ticket(0))
    assert response.status_code == 403
    assert "may not call agent 'ticket-triage'" in response.json()["detail"]


def test_upstream_trouble_after_retries_is_503_with_retry_after(api, production, emulator, settings):
    settings.PROMPTCTL_MAX_ATTEMPTS = 2
    emulator.configure(fault_500=1.0)
    response = api.post("/triage", ticket(2))
    assert response.status_code == 503
    assert int(response["Retry-After"]) >= 1
    body = response.json()
    assert "could not create a session after 2 attempts" in body["detail"]
    logged = TriageRequest.objects.get()
    assert logged.outcome == Outcome.UNAVAILABLE and f"#{logged.pk}" in body["detail"]


def test_rate_limited_upstream_passes_its_retry_after_on(api, production, emulator, settings):
    settings.PROMPTCTL_MAX_ATTEMPTS = 2
    settings.PROMPTCTL_BACKOFF_CAP = 0.05  # our own wait is capped; the advice passed on is the server's
    emulator.configure(fault_429=1.0, retry_after=3)
    response = api.post("/triage", ticket(2))
    assert response.status_code == 503
    assert response["Retry-After"] == "3"


def test_session_timeout_is_504_and_the_session_is_archived(api, production, emulator, settings):
    settings.PROMPTCTL_SESSION_TIMEOUT = 1.0
    emulator.configure(fault_stuck=1.0)
    response = api.post("/triage", ticket(4))
    assert response.status_code == 504
    assert "did not answer within 1s" in response.json()["detail"]
    assert TriageRequest.objects.get().outcome == Outcome.TIMEOUT
    assert emulator.stats()["sessions"]["unarchived"] == 0


def test_invalid_agent_output_is_answered_as_invalid_not_an_error(api, production):
    from tests.triage.support import V_RENAMED

    renamed = production.new_version(V_RENAMED)  # answers {"queue", "urgency"}: not a verdict
    production.canary(renamed, 99)
    answers = [api.post("/triage", ticket(5, request_key=f"key-{index}")).json() for index in range(5)]
    invalid = [a for a in answers if a["canary"]]
    assert invalid, "99% of keys go to the canary"
    answer = invalid[0]
    assert answer["valid"] is False and answer["team"] is None and answer["priority"] is None
    assert "missing 'team'" in answer["problem"] and answer["version"] == renamed
    logged = TriageRequest.objects.get(pk=answer["request_id"])
    assert logged.outcome == Outcome.INVALID and '"queue"' in logged.reply


def test_openapi_document_and_docs_are_served(production):
    client = Api(None)
    document = client.get("/openapi.json")
    assert document.status_code == 200
    schema = document.json()
    assert {
        "/api/v1/triage",
        "/api/v1/agents/{name}/triage",
        "/api/v1/triage/jobs",
        "/api/v1/triage/jobs/{job_id}",
    } <= set(schema["paths"])
    ticket_schema = schema["components"]["schemas"]["TicketIn"]
    assert ticket_schema["properties"]["subject"]["maxLength"] == 500
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"]["scheme"] == "bearer"
    docs = client.get("/docs")
    assert docs.status_code == 200 and b"openapi.json" in docs.content


def test_a_triage_call_costs_a_fixed_handful_of_queries(api, production, django_assert_max_num_queries):
    """Key check, pin read (one joined query), log insert, and at most one last-used update: no per-row lookups."""
    api.post("/triage", ticket(0))  # first use of the key records its last use
    with django_assert_max_num_queries(5) as captured:
        response = api.post("/triage", ticket(1, request_key="k"))
    assert response.status_code == 200
    pin_reads = [q["sql"] for q in captured.captured_queries if 'FROM "promptctl_pin"' in q["sql"]]
    assert len(pin_reads) == 1, "the pin is read once per request, never cached"


def test_a_caller_that_goes_away_is_still_logged_and_its_session_archived(api_key, production, emulator):
    """Django cancels the view when the client disconnects; the call is logged and the session archived anyway."""
    import asyncio

    from asgiref.sync import async_to_sync

    sessions_before = emulator.stats()["sessions"]["total"]
    emulator.configure(fault_stuck=1.0)

    async def caller_hangs_up() -> bool:
        serving = asyncio.ensure_future(
            services.triage_serve(
                token=api_key, agent_name=None, ticket=services.Ticket(subject="Refund", body="charged twice")
            )
        )
        await asyncio.sleep(0.7)
        serving.cancel()
        try:
            await serving
        except asyncio.CancelledError:
            pass
        else:
            return False
        for _ in range(100):
            if emulator.stats()["sessions"]["unarchived"] == 0:
                return True
            await asyncio.sleep(0.05)
        return False

    assert async_to_sync(caller_hangs_up)() is True
    logged = TriageRequest.objects.get()
    assert logged.outcome == Outcome.ABANDONED and "went away" in logged.problem
    assert logged.version.number == production.v1 and logged.session_id == ""
    assert emulator.stats()["sessions"]["total"] == sessions_before + 1
