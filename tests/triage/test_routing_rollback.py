"""A rollback reaches every caller at once: real uvicorn workers, clients in a loop, the apply in the middle.

Every request that starts after the rollback's apply has committed must be
served by the rolled-back version, asserted request by request (and checked
again against the request log). The server runs two worker processes, so
"every API process" is part of what is tested.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests
from django.db import connection

from config.children import api_server
from promptctl import services as change_services
from tests.triage.support import V3, People, ProductionAgent, ticket
from triage import services
from triage.models import TriageRequest

CLIENTS = 8


@pytest.fixture
def live_production(transactional_db, emulator, settings):
    settings.PROMPTCTL_RATE_LIMITER = "off"
    emulator.configure(latency=0.02)
    people = People()
    production = ProductionAgent(people)
    production.v3 = production.new_version(V3)
    production.promote_with_comparison(production.v3)
    production.secret = services.api_key_create(name="load", actor=people.admin, all_agents=True).secret
    return production


def _client_loop(base_url: str, secret: str, stop: threading.Event, results: list, index: int) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {secret}"
    sequence = 0
    while not stop.is_set():
        sequence += 1
        started = time.monotonic()
        response = session.post(
            base_url + "/api/v1/triage",
            json=ticket(index + sequence, request_key=f"client-{index}-{sequence}"),
            timeout=30,
        )
        finished = time.monotonic()
        results.append((started, finished, response.status_code, response.json() if response.ok else response.text))


@pytest.mark.postgres
@pytest.mark.slow
def test_requests_after_a_rollback_commits_are_all_served_by_the_rolled_back_version(live_production):
    production = live_production
    v1, v3 = production.v1, production.v3
    with api_server(settings_dict=connection.settings_dict, emulator_url=_emulator_url(), workers=2) as server:
        results: list = []
        stop = threading.Event()
        clients = [
            threading.Thread(
                target=_client_loop, args=(server.base_url, production.secret, stop, results, index), daemon=True
            )
            for index in range(CLIENTS)
        ]
        for client in clients:
            client.start()
        _wait_for(lambda: sum(1 for r in results if r[2] == 200) >= 40, what="warm-up traffic on v3")

        change = change_services.change_request_create(
            agent=production.agent,
            kind="rollback",
            target_number=v1,
            reason="v3 misroutes",
            actor=production.people.requester,
        )
        change_services.change_request_approve(change=change, reviewer=production.people.reviewer)
        change_services.change_request_apply(change=change, actor=production.people.reviewer)
        committed_at = time.monotonic()  # apply returned: its transaction has committed

        _wait_for(lambda: sum(1 for r in results if r[0] > committed_at) >= 80, what="traffic after the rollback")
        stop.set()
        for client in clients:
            client.join(timeout=30)

    failures = [r for r in results if r[2] != 200]
    assert not failures, f"{len(failures)} requests failed, e.g. {failures[:3]}"
    before = [r for r in results if r[1] < committed_at]
    after = [r for r in results if r[0] > committed_at]
    assert len(before) >= 40 and len(after) >= 80
    assert {r[3]["version"] for r in before} == {v3}, "before the rollback every request ended on v3"
    stale = [
        (round(r[0] - committed_at, 4), r[3]["version"], r[3]["request_id"]) for r in after if r[3]["version"] != v1
    ]
    assert not stale, f"requests started after the apply committed but were served by another version: {stale[:10]}"

    # The log agrees, request by request, and says which pin revision served each one.
    logged = {
        row.pk: (row.version.number, row.pin_revision)
        for row in TriageRequest.objects.select_related("version").filter(pk__in=[r[3]["request_id"] for r in after])
    }
    rolled_back_revision = production.agent.pins.get(channel="production").revision
    assert all(logged[r[3]["request_id"]] == (v1, rolled_back_revision) for r in after)


def _emulator_url() -> str:
    from django.conf import settings

    return settings.ANTHROPIC_BASE_URL


def _wait_for(condition, *, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
