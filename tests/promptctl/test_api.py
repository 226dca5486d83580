"""The change-control API over HTTP: personal tokens, the CLI's JSON shapes, the services' refusals as statuses.

Most requests go through Django's test client; one test drives the production
ASGI application in-process, and one a real uvicorn process on loopback.
"""

from __future__ import annotations

import io
import json

import pytest
import requests
from django.core.management import call_command
from django.db import connection

from promptctl.models import AuditEvent, ChangeRequest
from tests.asgi_support import asgi_request
from tests.change_control_support import CHANNEL, V2, promote
from tests.promptctl.api_support import Caller, caller_for, token_for
from tests.promptctl.audit_support import as_owner


def cli_json(*args: str):
    out = io.StringIO()
    call_command("promptctl", "--json", *args, stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue())


def file_change(rita: Caller, agent, **extra):
    body = {"agent": agent.name, "kind": "promote", "to": 1, "channel": CHANNEL, "reason": "ship v1", **extra}
    return rita.post("/changes", body)


# --- who is calling ----------------------------------------------------------------------------


def test_me_names_the_tokens_user_and_the_token(requester):
    secret = token_for(requester, name="laptop")
    response = Caller(secret).get("/me")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["username"] == "rita"
    assert body["roles"] == ["requester"]
    assert body["token"]["name"] == "laptop"
    assert secret.startswith(body["token"]["prefix"])
    assert body["token"]["read_only"] is False
    assert body["token"]["expires_at"]


def test_no_token_or_a_bad_one_is_401_in_the_error_shape(requester):
    missing = Caller(None).get("/me")
    assert missing.status_code == 401
    assert set(missing.json()) == {"detail", "errors"}
    assert "personal token" in missing.json()["detail"]
    wrong = Caller("pctlu_not-a-real-token").get("/agents")
    assert wrong.status_code == 401
    assert "not known" in wrong.json()["detail"]


def test_a_triage_api_key_is_not_a_personal_token(admin_user):
    from triage import services as triage_services

    key = triage_services.api_key_create(name="helpdesk", actor=admin_user, all_agents=True).secret
    response = Caller(key).get("/agents")
    assert response.status_code == 401
    assert "not a promptctl personal token" in response.json()["detail"]


# --- reads: the CLI's shapes ---------------------------------------------------------------------


def test_agent_reads_answer_what_the_cli_prints(agent, requester, reviewer):
    promote(agent, 1, requester, reviewer)
    rita = caller_for(requester)
    assert rita.get("/agents").json() == cli_json("agent", "list")
    assert rita.get(f"/agents/{agent.name}").json() == cli_json("agent", "status", "--agent", agent.name)
    assert rita.get(f"/agents/{agent.name}/versions").json() == cli_json("version", "list", "--agent", agent.name)
    version = rita.get(f"/agents/{agent.name}/versions/1").json()
    assert version["version"] == 1 and version["origin"] == "promptctl"
    pins = rita.get(f"/agents/{agent.name}/pins").json()
    assert pins[CHANNEL]["version"] == 1


def test_diff_and_unknown_names_are_404(agent, requester):
    from promptctl import services

    services.version_create(agent=agent, system_prompt=V2, actor=requester)
    rita = caller_for(requester)
    diff = rita.get(f"/agents/{agent.name}/diff", **{"from": 1, "to": 2})
    assert diff.status_code == 200
    assert diff.json() == cli_json("version", "diff", "--agent", agent.name, "1", "2")
    assert diff.json()["identical"] is False
    unknown = rita.get("/agents/no-such-agent")
    assert unknown.status_code == 404
    assert "No agent named 'no-such-agent'" in unknown.json()["detail"]
    assert rita.get(f"/agents/{agent.name}/versions/99").status_code == 404
    assert rita.get("/changes/999999").status_code == 404
    assert rita.get(f"/agents/{agent.name}/diff", **{"from": 1}).status_code == 422


# --- writes --------------------------------------------------------------------------------------


def test_version_create_is_audited_as_the_tokens_user(agent, requester):
    rita = caller_for(requester)
    response = rita.post(f"/agents/{agent.name}/versions", {"system_prompt": V2})
    assert response.status_code == 201, response.content
    assert response.json()["version"] == 2
    assert response.json()["created_by"] == "rita"
    event = AuditEvent.objects.filter(verb__startswith="version").latest("sequence")
    assert event.actor_username == "rita"
    empty = rita.post(f"/agents/{agent.name}/versions", {"system_prompt": ""})
    assert empty.status_code == 422
    assert empty.json()["errors"][0]["field"] == "system_prompt"


def test_a_read_only_token_reads_but_cannot_write(agent, requester):
    viewer = caller_for(requester, read_only=True)
    assert viewer.get(f"/agents/{agent.name}").status_code == 200
    refused = viewer.post(f"/agents/{agent.name}/versions", {"system_prompt": V2})
    assert refused.status_code == 403
    assert "read-only" in refused.json()["detail"]
    assert agent.versions.count() == 1


def test_four_eyes_over_http(agent, requester, reviewer):
    rita, victor = caller_for(requester), caller_for(reviewer)
    filed = file_change(rita, agent)
    assert filed.status_code == 201, filed.content
    change_id = filed.json()["id"]
    assert filed.json()["requested_by"] == "rita" and filed.json()["status"] == "pending"

    own = rita.post(f"/changes/{change_id}/approve", {"comment": "lgtm"})
    assert own.status_code == 403
    assert "four-eyes" in own.json()["detail"]
    assert not ChangeRequest.objects.get(pk=change_id).approvals.exists()

    approved = victor.post(f"/changes/{change_id}/approve", {"comment": "checked"})
    assert approved.status_code == 200, approved.content
    assert approved.json()["status"] == "approved" and approved.json()["approvals"] == 1

    applied = victor.post(f"/changes/{change_id}/apply")
    assert applied.status_code == 200, applied.content
    assert applied.json()["pin"] == {"channel": CHANNEL, **applied.json()["pin"]}
    assert applied.json()["pin"]["version"] == 1
    assert applied.json()["change_request"]["status"] == "applied"

    again = victor.post(f"/changes/{change_id}/apply")
    assert again.status_code == 409
    assert "already applied" in again.json()["detail"]

    shown = rita.get(f"/changes/{change_id}").json()
    assert shown == cli_json("change", "show", str(change_id))
    assert [d["reviewer"] for d in shown["decisions"]] == ["victor"]
    events = {
        e.verb: e for e in AuditEvent.objects.filter(object_id=str(change_id), object_type="promptctl.changerequest")
    }
    assert events["change.request"].actor_username == "rita"
    assert events["change.applied"].actor_username == "victor"
    victor_token = approved.wsgi_request.auth
    assert events["change.applied"].token_ref == victor_token.ref
    assert events["change.request"].token_ref != victor_token.ref


def test_approve_takes_no_body(agent, requester, reviewer):
    filed = file_change(caller_for(requester), agent).json()
    approved = caller_for(reviewer).post(f"/changes/{filed['id']}/approve")
    assert approved.status_code == 200, approved.content
    assert approved.json()["approvals"] == 1


def test_refusals_of_the_services_are_400_with_their_line(agent, requester, reviewer):
    rita = caller_for(requester)
    no_target = rita.post("/changes", {"agent": agent.name, "kind": "promote", "reason": "x"})
    assert no_target.status_code == 400
    refused = no_target.json()
    assert refused["detail"] == "A promote request needs the target version (--to VERSION)." == refused["message"]
    assert (refused["code"], refused["fields"], refused["errors"]) == ("target_version_missing", ["target_version"], [])
    assert "--to" not in refused["web_message"] and refused["fix"]["web"] == refused["web_message"]
    unknown_agent = rita.post("/changes", {"agent": "nope", "kind": "promote", "to": 1, "reason": "x"})
    assert unknown_agent.status_code == 404
    not_a_number = rita.post("/changes", {"agent": agent.name, "kind": "promote", "to": "1", "reason": "x"})
    assert not_a_number.status_code == 422
    not_an_object = rita.post("/changes", raw=b"[1, 2]")
    assert not_an_object.status_code == 400
    assert "must be a JSON object (see /api/v1/docs" in not_an_object.json()["detail"]
    assert not ChangeRequest.objects.exists()


def test_reject_needs_a_comment_and_closes_the_request(agent, requester, reviewer):
    filed = file_change(caller_for(requester), agent).json()
    victor = caller_for(reviewer)
    assert victor.post(f"/changes/{filed['id']}/reject", {}).status_code == 422
    rejected = victor.post(f"/changes/{filed['id']}/reject", {"comment": "needs an eval"})
    assert rejected.status_code == 200, rejected.content
    assert rejected.json()["status"] == "rejected"
    late = victor.post(f"/changes/{filed['id']}/apply")
    assert late.status_code == 409


def test_withdraw_only_by_the_requester(agent, requester, reviewer):
    filed = file_change(caller_for(requester), agent).json()
    other = caller_for(reviewer).post(f"/changes/{filed['id']}/withdraw")
    assert other.status_code in (400, 403)
    assert ChangeRequest.objects.get(pk=filed["id"]).status == "pending"
    withdrawn = caller_for(requester, name="second").post(f"/changes/{filed['id']}/withdraw")
    assert withdrawn.status_code == 200, withdrawn.content
    assert withdrawn.json()["status"] == "withdrawn"


def test_change_list_filters_like_the_cli(agent, requester, reviewer):
    rita = caller_for(requester)
    first = file_change(rita, agent).json()
    listed = rita.get("/changes", agent=agent.name, status="pending")
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()] == [first["id"]]
    assert listed.json() == cli_json("change", "list", "--agent", agent.name, "--status", "pending")
    assert rita.get("/changes", status="applied").json() == []
    bad = rita.get("/changes", status="bogus")
    assert bad.status_code == 400
    assert "Unknown status" in bad.json()["detail"]


# --- the audit trail --------------------------------------------------------------------------------


def test_audit_verify_and_events(agent, requester, reviewer):
    promote(agent, 1, requester, reviewer)
    rita = caller_for(requester)
    verified = rita.get("/audit/verify")
    assert verified.status_code == 200
    assert verified.json()["ok"] is True
    assert verified.json()["checked"] == AuditEvent.objects.count()
    events = rita.get("/audit/events", agent=agent.name, limit=3).json()
    assert len(events) == 3
    sequences = [e["sequence"] for e in events]
    assert sequences == sorted(sequences, reverse=True)
    newest = AuditEvent.objects.filter(agent_id_ref=agent.pk).latest("sequence")
    assert events[0]["sequence"] == newest.sequence and events[0]["verb"] == newest.verb
    assert rita.get("/audit/events", limit=0).status_code == 400


def test_audit_verify_reports_a_broken_chain_with_200(agent, requester):
    first = AuditEvent.objects.earliest("sequence")
    as_owner(("UPDATE promptctl_auditevent SET actor_username = %s WHERE id = %s", ["mallory", first.pk]))
    verified = caller_for(requester).get("/audit/verify")
    assert verified.status_code == 200
    assert verified.json()["ok"] is False
    assert verified.json()["first_broken_sequence"] == 1


# --- the document and the servers -------------------------------------------------------------------

ENDPOINTS = {
    ("get", "/api/v1/me"): None,
    ("get", "/api/v1/agents"): None,
    ("get", "/api/v1/agents/{name}"): None,
    ("get", "/api/v1/agents/{name}/versions"): None,
    ("post", "/api/v1/agents/{name}/versions"): "VersionIn",
    ("get", "/api/v1/agents/{name}/versions/{number}"): None,
    ("get", "/api/v1/agents/{name}/diff"): None,
    ("get", "/api/v1/agents/{name}/pins"): None,
    ("get", "/api/v1/changes"): None,
    ("post", "/api/v1/changes"): "ChangeIn",
    ("get", "/api/v1/changes/{change_id}"): None,
    ("post", "/api/v1/changes/{change_id}/approve"): "ApproveIn",
    ("post", "/api/v1/changes/{change_id}/reject"): "RejectIn",
    ("post", "/api/v1/changes/{change_id}/apply"): None,
    ("post", "/api/v1/changes/{change_id}/withdraw"): None,
    ("get", "/api/v1/audit/verify"): None,
    ("get", "/api/v1/audit/events"): None,
    ("post", "/api/v1/testsets/import"): "TestsetImportIn",
    ("get", "/api/v1/testsets"): None,
    ("post", "/api/v1/runs"): "RunIn",
    ("get", "/api/v1/runs/{run_id}"): None,
    ("post", "/api/v1/comparisons"): "ComparisonIn",
    ("get", "/api/v1/comparisons/{comparison_id}"): None,
}


def test_the_openapi_document_lists_every_endpoint_with_its_body_and_bearer_auth(db):
    document = Caller(None).get("/openapi.json").json()
    for (method, path), body in ENDPOINTS.items():
        operation = document["paths"][path][method]
        assert operation["security"], (method, path)
        assert "401" in operation["responses"], (method, path)
        if body:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            assert f'"#/components/schemas/{body}"' in json.dumps(schema), (method, path, schema)
            assert body in document["components"]["schemas"]
    assert "/api/v1/triage" in document["paths"]  # the triage API is still there, with its own keys


def test_the_production_asgi_application_serves_a_sync_write(agent, requester, reviewer):
    secret = token_for(requester)
    response = asgi_request(
        "POST",
        "/api/v1/changes",
        content=json.dumps(
            {"agent": agent.name, "kind": "promote", "to": 1, "channel": CHANNEL, "reason": "via asgi"}
        ).encode(),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text
    assert ChangeRequest.objects.get(pk=response.json()["id"]).requested_by == requester


@pytest.mark.slow
def test_a_real_uvicorn_process_serves_the_four_eyes_rule(transactional_db, emulator, settings):
    from config.children import api_server
    from promptctl import services

    rita = services.user_create(username="rita", role="requester")
    victor = services.user_create(username="victor", role="reviewer")
    agent = services.agent_create(name="ticket-triage", model="claude-sonnet-4-6", system_prompt=V2, actor=rita)
    rita_auth = {"Authorization": f"Bearer {token_for(rita)}"}
    victor_secret = token_for(victor)
    victor_auth = {"Authorization": f"Bearer {victor_secret}"}
    with api_server(settings_dict=connection.settings_dict, emulator_url=settings.ANTHROPIC_BASE_URL) as server:
        base = server.base_url + "/api/v1"
        me = requests.get(base + "/me", headers=rita_auth, timeout=30)
        assert me.status_code == 200 and me.json()["username"] == "rita"
        body = {"agent": agent.name, "kind": "promote", "to": 1, "channel": CHANNEL, "reason": "live"}
        filed = requests.post(base + "/changes", json=body, headers=rita_auth, timeout=30)
        assert filed.status_code == 201, filed.text
        change_id = filed.json()["id"]
        own = requests.post(base + f"/changes/{change_id}/approve", json={}, headers=rita_auth, timeout=30)
        assert own.status_code == 403 and "four-eyes" in own.json()["detail"]
        approved = requests.post(base + f"/changes/{change_id}/approve", json={}, headers=victor_auth, timeout=30)
        assert approved.status_code == 200 and approved.json()["status"] == "approved"
        applied = requests.post(base + f"/changes/{change_id}/apply", headers=victor_auth, timeout=30)
        assert applied.status_code == 200, applied.text
        listed = requests.get(base + "/changes", params={"status": "applied"}, headers=rita_auth, timeout=30)
        assert [c["id"] for c in listed.json()] == [change_id]
    applied_event = AuditEvent.objects.get(verb="change.applied", object_id=str(change_id))
    assert applied_event.actor_username == "victor"
    assert applied_event.token_ref.endswith(":" + victor_secret[:12])  # the token it came through, over real HTTP
