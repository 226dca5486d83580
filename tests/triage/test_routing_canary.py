"""Canary routing: a sticky share of traffic, within binomial bounds, and ended automatically when it misbehaves."""

from __future__ import annotations

import math
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from config.children import api_server
from promptctl import services as change_services
from promptctl.errors import DomainError
from promptctl.models import ChangeRequest
from tests.triage.support import V1, V2, V_RENAMED, People, ProductionAgent, ticket
from triage import pins, services
from triage.models import CanaryCheck, Outcome, TriageRequest


def binomial_bounds(n: int, p: float, tail: float = 1e-6) -> tuple[int, int]:
    """The smallest and largest counts whose one-sided tail probability is at least ``tail``."""

    def log_pmf(k: int) -> float:
        return (
            math.lgamma(n + 1)
            - math.lgamma(k + 1)
            - math.lgamma(n - k + 1)
            + k * math.log(p)
            + (n - k) * math.log1p(-p)
        )

    pmf = [math.exp(log_pmf(k)) for k in range(n + 1)]
    low, cumulative = 0, 0.0
    while cumulative + pmf[low] < tail:
        cumulative += pmf[low]
        low += 1
    high, cumulative = n, 0.0
    while cumulative + pmf[high] < tail:
        cumulative += pmf[high]
        high -= 1
    return low, high


def test_binomial_bounds_are_what_the_tests_rely_on():
    low, high = binomial_bounds(2000, 0.10)
    assert 130 < low < 200 < high < 270


def test_canary_bucket_is_stable_and_depends_on_agent_version_and_key():
    first = pins.canary_bucket(agent_remote_id="agent_1", canary_version_number=2, request_key="customer-9")
    assert first == pins.canary_bucket(agent_remote_id="agent_1", canary_version_number=2, request_key="customer-9")
    others = {
        pins.canary_bucket(agent_remote_id="agent_1", canary_version_number=3, request_key="customer-9"),
        pins.canary_bucket(agent_remote_id="agent_2", canary_version_number=2, request_key="customer-9"),
        pins.canary_bucket(agent_remote_id="agent_1", canary_version_number=2, request_key="customer-10"),
    }
    assert first not in others or len(others) == 3
    assert all(0 <= bucket < pins.BUCKETS for bucket in others | {first})


def test_pin_resolution_over_keys_is_sticky_and_proportional(production):
    v2 = production.new_version(V2)
    production.canary(v2, 10)
    keys = [f"customer-{index}" for index in range(2000)]
    chosen = {key: pins.pin_route(agent_name="ticket-triage", request_key=key).canary for key in keys}
    low, high = binomial_bounds(2000, 0.10)
    assert low <= sum(chosen.values()) <= high
    again = {key: pins.pin_route(agent_name="ticket-triage", request_key=key).canary for key in keys[:300]}
    assert again == {key: chosen[key] for key in keys[:300]}


@pytest.fixture
def canary_production(transactional_db, emulator, settings):
    settings.PROMPTCTL_RATE_LIMITER = "off"
    emulator.configure(latency=0.0)
    people = People()
    production = ProductionAgent(people)
    production.v2 = production.new_version(V2)
    production.canary(production.v2, 10)
    production.secret = services.api_key_create(name="canary-load", actor=people.admin, all_agents=True).secret
    return production


@pytest.mark.postgres
@pytest.mark.slow
def test_ten_percent_canary_over_2000_api_requests_within_binomial_bounds_and_sticky_per_key(
    canary_production, emulator
):
    production = canary_production
    from django.conf import settings

    with api_server(
        settings_dict=connection.settings_dict, emulator_url=settings.ANTHROPIC_BASE_URL, workers=2
    ) as server:
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=32, pool_maxsize=32)
        session.mount("http://", adapter)
        session.headers["Authorization"] = f"Bearer {production.secret}"

        def call(payload: dict) -> dict:
            response = session.post(server.base_url + "/api/v1/triage", json=payload, timeout=60)
            assert response.status_code == 200, response.text
            return response.json()

        # 1000 calls without a key (random share) and 1000 with a fresh key each (hashed share).
        payloads = [ticket(index) for index in range(1000)]
        payloads += [ticket(index, request_key=str(uuid.uuid4())) for index in range(1000)]
        # 25 keys sent 12 times each: every key must get one version every time.
        sticky = [ticket(repeat, request_key=f"customer-{key}") for key in range(25) for repeat in range(12)]
        with ThreadPoolExecutor(max_workers=32) as pool:
            answers = list(pool.map(call, payloads))
            sticky_answers = list(pool.map(call, sticky))

    versions = Counter(answer["version"] for answer in answers)
    assert set(versions) == {production.v1, production.v2}
    canary_count = sum(1 for answer in answers if answer["canary"])
    assert canary_count == versions[production.v2]
    low, high = binomial_bounds(2000, 0.10)
    assert low <= canary_count <= high, f"{canary_count} of 2000 on the canary, outside [{low}, {high}]"
    per_key: dict[str, set[int]] = defaultdict(set)
    for payload, answer in zip(sticky, sticky_answers, strict=True):
        per_key[payload["request_key"]].add(answer["version"])
    assert all(len(seen) == 1 for seen in per_key.values()), {
        key: seen for key, seen in per_key.items() if len(seen) > 1
    }
    assert TriageRequest.objects.filter(canary=True).count() == canary_count + sum(a["canary"] for a in sticky_answers)


@pytest.mark.slow
def test_a_canary_over_its_invalid_output_limit_files_a_change_request_ending_it(
    api, production, people, eager_tasks, django_capture_on_commit_callbacks
):
    bad = production.new_version(V_RENAMED)
    canary_change = production.canary(bad, 50)
    # A stricter policy for people's requests does not apply to the one promptctl files itself.
    change_services.agent_policy_update(agent=production.agent, actor=people.admin, required_approvals=2)
    production.policy.canary_min_requests = 8
    production.policy.canary_max_invalid_rate = 0.2
    services.routing_policy_save(policy=production.policy, actor=people.admin)

    with django_capture_on_commit_callbacks(execute=True):
        answers = [api.post("/triage", ticket(index, request_key=f"k{index}")).json() for index in range(40)]
    canary_answers = [a for a in answers if a["canary"]]
    assert len(canary_answers) >= 8 and all(a["valid"] is False for a in canary_answers)
    assert all(a["valid"] for a in answers if not a["canary"]), "callers on the pinned version are unaffected"

    check = CanaryCheck.objects.get()
    assert check.canary_change_id == canary_change.pk and check.canary_version.number == bad
    assert check.invalid == check.requests >= 8 and check.errors == 0
    ending = check.end_change
    assert ending.kind == ChangeRequest.Kind.ROLLBACK and ending.status == ChangeRequest.Status.PENDING
    assert ending.target_version.number == production.v1
    assert ending.requested_by.username == services.SYSTEM_USERNAME
    assert f"{check.invalid} invalid" in ending.evidence["reference"] and "limit 20.0%" in ending.evidence["reference"]
    assert f"{check.requests} requests" in ending.reason
    assert ending.approvals_required == 1 and ending.agent.required_approvals == 2
    with pytest.raises(DomainError, match="only rollbacks"):
        change_services.change_request_create(
            agent=ending.agent,
            kind=ChangeRequest.Kind.PROMOTE,
            target_number=bad,
            reason="x",
            actor=ending.requested_by,
            filed_by_promptctl=True,
        )

    # The same task again (a redelivery) files nothing new.
    assert services.canary_end(agent_id=production.agent.pk, pin_revision=check.pin_revision) == check
    assert ChangeRequest.objects.filter(requested_by__username=services.SYSTEM_USERNAME).count() == 1

    # Any one reviewer may approve it; applying needs that approval, then the canary is over.
    change_services.change_request_approve(change=ending, reviewer=people.reviewer)
    change_services.change_request_apply(change=ending, actor=people.reviewer)
    after = [api.post("/triage", ticket(index, request_key=f"k{index}")).json() for index in range(10)]
    assert {a["version"] for a in after} == {production.v1} and not any(a["canary"] for a in after)


@pytest.mark.slow
def test_a_healthy_canary_is_left_alone(api, production, people, eager_tasks, django_capture_on_commit_callbacks):
    v3 = production.new_version(V1 + "\nAnswer with the JSON line only.")
    production.canary(v3, 50)
    production.policy.canary_min_requests = 5
    services.routing_policy_save(policy=production.policy, actor=people.admin)
    with django_capture_on_commit_callbacks(execute=True):
        answers = [api.post("/triage", ticket(index, request_key=f"h{index}")).json() for index in range(40)]
    assert sum(a["canary"] for a in answers) >= 5 and all(a["valid"] for a in answers)
    assert not CanaryCheck.objects.exists()
    assert not ChangeRequest.objects.filter(requested_by__username=services.SYSTEM_USERNAME).exists()


def test_canary_session_errors_count_against_the_error_limit(production, people, emulator, settings):
    """Failed canary sessions are logged as errors and end the canary like invalid output does."""
    v2 = production.new_version(V2)
    production.canary(v2, 50)
    production.policy.canary_min_requests = 4
    production.policy.canary_max_error_rate = 0.25
    services.routing_policy_save(policy=production.policy, actor=people.admin)
    secret = services.api_key_create(name="errors", actor=people.admin, all_agents=True).secret
    from tests.triage.support import Api

    client = Api(secret)
    settings.PROMPTCTL_MAX_ATTEMPTS = 1
    emulator.configure(fault_500=1.0)
    statuses = [client.post("/triage", ticket(index, request_key=f"e{index}")).status_code for index in range(30)]
    assert set(statuses) == {503}
    canary_errors = TriageRequest.objects.filter(canary=True, outcome=Outcome.UNAVAILABLE).count()
    assert canary_errors >= 4
    emulator.configure(fault_500=0.0)
    check = services.canary_end(agent_id=production.agent.pk, pin_revision=production.agent.pins.get().revision)
    assert check is not None and check.errors == canary_errors and check.invalid == 0
    assert "failed" in check.end_change.evidence["reference"]
