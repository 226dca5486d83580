"""Helpers shared by the triage tests (no tests or fixtures here; those are in ``conftest.py``).

An agent is put into production the way people do it: a gating test set, an
eval run of the candidate (its units run through the real service, one
pinned session each, against the emulator), then a change request filed,
approved by someone else and applied.
"""

from __future__ import annotations

import asyncio
import json
import time

from evals import services as eval_services
from evals.models import EvalRun
from managed_agents import tickets
from promptctl import services as change_services
from promptctl.models import Agent
from promptctl.tutorial import V1_PROMPT, V2_PROMPT, tickets_load
from tests.asgi_support import asgi_request
from triage.models import RoutingPolicy

TICKETS = tickets_load()
V1 = V1_PROMPT
V2 = V2_PROMPT
V3 = V1 + "\nAnswer with the JSON line only."
# A canary whose prompt renames the output fields: the emulator answers {"queue", "urgency"},
# which promptctl cannot read as a verdict, so every canary reply is invalid.
V_RENAMED = V1.replace(
    '{"team": "<billing|auth|api-platform|dashboard>", "priority": "<P1|P2|P3>"}',
    '{"queue": "<billing|auth|api-platform|dashboard>", "urgency": "<P1|P2|P3>"}',
)
PASSWORD = "correct-horse-battery"
GATE_TICKET_IDS = ("TKT-1001", "TKT-1006", "TKT-1011", "TKT-1016")


def ticket_text(ticket: dict) -> str:
    return tickets.ticket_text(subject=ticket["subject"], body=ticket["body"])


class People:
    def __init__(self) -> None:
        self.requester = change_services.user_create(username="rita", role="requester", password=PASSWORD)
        self.reviewer = change_services.user_create(username="victor", role="reviewer", password=PASSWORD)
        self.admin = change_services.user_create(username="ada", role="admin", password=PASSWORD)


def gate_tickets_jsonl() -> str:
    chosen = [t for t in TICKETS if t["id"] in GATE_TICKET_IDS] or TICKETS[:4]
    return "\n".join(json.dumps(t) for t in chosen) + "\n"


def eval_run_now(*, version, testset_version, actor) -> EvalRun:
    """Start a run and execute every unit now through the evals service (what the worker task calls)."""
    run = eval_services.eval_run_start(agent_version=version, testset_version=testset_version, actor=actor)
    for case in testset_version.cases.order_by("position"):
        eval_services.eval_unit_execute(run_id=run.pk, case_id=case.pk, attempt=1)
    run.refresh_from_db()
    assert run.status == EvalRun.Status.FINISHED, f"eval run #{run.pk} did not finish: {run.status}"
    return run


def move_pin(
    agent,
    number: int,
    people: People,
    *,
    kind: str = "promote",
    evidence_ref: str | None = None,
    percent: int | None = None,
):
    change = change_services.change_request_create(
        agent=agent,
        kind=kind,
        target_number=number,
        reason=f"{kind} v{number}",
        actor=people.requester,
        canary_percent=percent,
        evidence_ref=evidence_ref,
    )
    change_services.change_request_approve(change=change, reviewer=people.reviewer)
    change_services.change_request_apply(change=change, actor=people.reviewer)
    change.refresh_from_db()
    return change


def make_default(agent, people: People):
    """Make ``agent`` the API's default the only way there is: a route change request, approved and applied."""
    change = change_services.change_request_create(
        agent=agent, kind="route", target_number=None, reason=f"serve {agent.name} by default", actor=people.requester
    )
    change_services.change_request_approve(change=change, reviewer=people.reviewer)
    change_services.change_request_apply(change=change, actor=people.reviewer)
    change.refresh_from_db()
    return change


class ProductionAgent:
    """An agent with v1 pinned in production (through the evals gate), as the default agent."""

    def __init__(self, people: People, *, name: str = "ticket-triage", default: bool = True) -> None:
        self.people = people
        self.agent = change_services.agent_create(
            name=name, model="claude-sonnet-4-6", system_prompt=V1, actor=people.requester
        )
        imported = eval_services.testset_import(
            name=f"{name}-gate",
            data=gate_tickets_jsonl(),
            filename="gate.jsonl",
            agent=self.agent,
            gating=True,
            actor=people.admin,  # choosing the gating set needs evals.change_gating_testset
        )
        self.testset = imported.testset
        self.testset_version = imported.version
        self.runs: dict[int, EvalRun] = {}
        v1 = self.agent.versions.get(number=self.agent.latest_version_number)
        self.v1 = v1.number
        self.runs[v1.number] = eval_run_now(version=v1, testset_version=self.testset_version, actor=people.requester)
        move_pin(self.agent, v1.number, people, evidence_ref=f"run:{self.runs[v1.number].pk}")
        if default:
            make_default(self.agent, people)
        self.policy, _ = RoutingPolicy.objects.get_or_create(agent=self.agent)

    def new_version(self, system_prompt: str) -> int:
        version = change_services.version_create(
            agent=self.agent, system_prompt=system_prompt, actor=self.people.requester
        )
        return version.number

    def promote_with_comparison(self, number: int) -> None:
        """Promote ``number`` over the current pin with an eval comparison (it must not regress)."""
        version = self.agent.versions.get(number=number)
        self.runs[number] = eval_run_now(
            version=version, testset_version=self.testset_version, actor=self.people.requester
        )
        pinned = self.agent.pins.get(channel="production").version.number
        comparison = eval_services.comparison_for_versions(
            agent=self.agent, baseline_number=pinned, candidate_number=number
        )
        move_pin(self.agent, number, self.people, evidence_ref=f"comparison:{comparison.pk}")

    def rollback(self, number: int):
        return move_pin(self.agent, number, self.people, kind="rollback")

    def canary(self, number: int, percent: int):
        """Send ``percent`` of traffic to ``number``; above the agent's threshold with eval evidence, as the gate asks.

        A regressed comparison is accepted (the tests are about routing, not the
        gate), so the request carries the accept reason and a second approval (ada).
        """
        agent = Agent.objects.get(pk=self.agent.pk)
        if percent <= agent.canary_evidence_above_percent:
            return move_pin(self.agent, number, self.people, kind="canary", percent=percent)
        pinned = self.agent.pins.get(channel="production").version.number
        for wanted in (pinned, number):
            if wanted not in self.runs:
                self.runs[wanted] = eval_run_now(
                    version=self.agent.versions.get(number=wanted),
                    testset_version=self.testset_version,
                    actor=self.people.requester,
                )
        comparison = eval_services.comparison_for_versions(
            agent=self.agent, baseline_number=pinned, candidate_number=number
        )
        change = change_services.change_request_create(
            agent=self.agent,
            kind="canary",
            target_number=number,
            reason=f"canary v{number} at {percent}%",
            actor=self.people.requester,
            canary_percent=percent,
            evidence_ref=f"comparison:{comparison.pk}",
            accept_regression_reason="routing test: the canary's answers are what is under test"
            if comparison.regressed
            else "",
        )
        change_services.change_request_approve(change=change, reviewer=self.people.reviewer)
        if comparison.regressed:
            change_services.change_request_approve(change=change, reviewer=self.people.admin)
        change_services.change_request_apply(change=change, actor=self.people.reviewer)
        change.refresh_from_db()
        return change


class ApiResponse:
    """An HTTP response from the API, read like Django's test responses (``response["Retry-After"]``)."""

    def __init__(self, response) -> None:
        self.status_code = response.status_code
        self.content = response.content
        self.headers = response.headers
        self._response = response

    def json(self):
        return self._response.json()

    def __getitem__(self, name: str) -> str:
        return self.headers[name]

    def __contains__(self, name: str) -> bool:
        return name in self.headers


class Api:
    """The API in-process through the production ASGI application (``tests.asgi_support``), with a key."""

    def __init__(self, secret: str | None) -> None:
        self.secret = secret

    def _headers(self, secret: str | None) -> dict[str, str]:
        chosen = self.secret if secret is None else secret
        return {"Authorization": f"Bearer {chosen}"} if chosen else {}

    def request(self, method: str, path: str, *, content: bytes | None = None, headers: dict[str, str] | None = None):
        return ApiResponse(asgi_request(method, path, content=content, headers=headers))

    def post(
        self,
        path: str,
        payload=None,
        *,
        raw: bytes | None = None,
        secret: str | None = None,
        content_type: str = "application/json",
    ):
        data = raw if raw is not None else json.dumps(payload).encode()
        return self.request(
            "POST", "/api/v1" + path, content=data, headers={"Content-Type": content_type, **self._headers(secret)}
        )

    def get(self, path: str, *, secret: str | None = None):
        return self.request("GET", "/api/v1" + path, headers=self._headers(secret))


def ticket(index: int = 0, **extra) -> dict:
    chosen = TICKETS[index % len(TICKETS)]
    return {"subject": chosen["subject"], "body": chosen["body"], **extra}


def run_async(coroutine):
    return asyncio.run(coroutine)


def wait_for(what: str, condition, *, timeout: float):
    """Poll ``condition`` every 0.1 s until it returns something truthy (returned); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")
