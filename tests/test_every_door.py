"""One rule for every door: each write to what production serves, or to how a change is judged, is audited.

Two halves:

- **Statically**, every function in the shipped packages that writes one of
  the gate's models (``GATE_MODELS``) also writes an audit event, or is named
  in ``NOT_A_DOOR`` with the reason it needs none. A new write path that skips
  the audit fails here, by name.
- **Dynamically**, each door (``DOORS``) is called twice through the real
  services: by an active staff user with no permissions, who is refused with
  nothing written and no event; and by someone allowed, which writes an audit
  event about the model it changed.

Access changes of users and groups go through the ORM's edge
(``promptctl.services.access``), tested in ``tests/promptctl/test_access_audit.py``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("promptctl", "evals", "triage")
GATE_MODELS = {
    "Pin",
    "ChangeRequest",
    "Approval",
    "Agent",
    "TestSet",
    "TestSetVersion",
    "RoutingPolicy",
    "CanaryPolicy",
    "ApiKey",
}
WRITES = {"save", "saved_by", "create", "update", "delete", "bulk_create", "bulk_update", "update_or_create"}
AUDITS = {"audit_record", "access_change_record", "_version_record", "_gating_write_record"}
# "module:function" -> why it writes a gate model without an event of its own.
NOT_A_DOOR = {
    "evals/services/runs.py:eval_run_start": "reads the test set version it scores; writes an eval run",
    "triage/services/shadow.py:canary_compare": "reads the pin; writes a canary comparison (evidence, not state)",
    "promptctl/services/notifications.py:change_notify": "reads the change request; queues notifications, not state",
}


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _called_names(node: ast.AST) -> set[str]:
    names = set()
    for call in (each for each in ast.walk(node) if isinstance(each, ast.Call)):
        function = call.func
        if isinstance(function, ast.Attribute):
            names.add(function.attr)
        elif isinstance(function, ast.Name):
            names.add(function.id)
    return names


def _unaudited_writers() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if "/migrations/" in relative or "/tests/" in relative:
                continue
            tree = ast.parse(path.read_text(), filename=relative)
            for function in _functions(tree):
                models = {node.id for node in ast.walk(function) if isinstance(node, ast.Name)} & GATE_MODELS
                calls = _called_names(function)
                if models and calls & WRITES and not calls & AUDITS:
                    key = f"{relative}:{function.name}"
                    if key not in NOT_A_DOOR:
                        found.append(f"{key} writes near {sorted(models)} with no audit event")
    return found


def test_every_function_that_writes_a_gate_model_writes_an_audit_event():
    assert _unaudited_writers() == []


# --- the doors, called ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Door:
    name: str
    verb: str  # the verb (or its prefix) of the event the door writes
    call: Callable[[dict, Any], Any]  # (world, actor) -> result; world is built by ``prepare``
    prepare: Callable[[dict], None] = lambda world: None


def _services():
    from promptctl import services

    return services


def _triage():
    from triage import services

    return services


def _evals():
    from evals import services

    return services


def _filed(world: dict) -> None:
    world["change"] = _services().change_request_create(
        agent=world["agent"], kind="promote", target_number=1, reason="go", actor=world["requester"], channel="staging"
    )


def _approved(world: dict) -> None:
    _filed(world)
    _services().change_request_approve(change=world["change"], reviewer=world["reviewer"])


def _ungated_set(world: dict) -> None:
    from promptctl.tutorial import TICKETS_FILE

    world["testset"] = (
        _evals()
        .testset_import(name="candidate-gate", data=TICKETS_FILE.read_bytes(), filename="t.jsonl", agent=world["agent"])
        .testset
    )


def _policy_with_limit(agent, rate: float):
    from triage.models import RoutingPolicy

    policy = RoutingPolicy.objects.filter(agent=agent).first() or RoutingPolicy(agent=agent)
    policy.canary_max_invalid_rate = rate
    return policy


def _canary_policy(agent):
    from triage.models import CanaryPolicy

    policy = CanaryPolicy.objects.filter(agent=agent).first() or CanaryPolicy(agent=agent)
    policy.disagreement_limit = 0.3
    return policy


def _issued_key(world: dict) -> None:
    world["key"] = _triage().api_key_create(name="to-revoke", actor=world["admin"], all_agents=True).key


def _remote_deployment(world: dict) -> None:
    from managed_agents import gateway

    agent = world["agent"]
    world["deployment_id"] = gateway.deployment_create(
        name="door-digest",
        agent_id=agent.remote_id,
        version=agent.latest_version_number,
        environment_id=agent.environment_id,
        message="Summarise the night's tickets.",
    ).id


def _bound_deployment(world: dict) -> None:
    _remote_deployment(world)
    world["binding"] = _services().deployment_bind(
        agent=world["agent"], deployment_id=world["deployment_id"], actor=world["admin"]
    )


DOORS = [
    Door(
        "agent policy",
        "agent.policy",
        lambda w, actor: _services().agent_policy_update(agent=w["agent"], actor=actor, required_approvals=2),
    ),
    Door(
        "file a change request",
        "change.",
        lambda w, actor: _services().change_request_create(
            agent=w["agent"], kind="promote", target_number=1, reason="go", actor=actor, channel="staging"
        ),
    ),
    Door(
        "approve",
        "change.approve",
        lambda w, actor: _services().change_request_approve(change=w["change"], reviewer=actor),
        _filed,
    ),
    Door(
        "apply (moves the pin)",
        "pin.move",
        lambda w, actor: _services().change_request_apply(change=w["change"], actor=actor),
        _approved,
    ),
    Door(
        "choose the gating set",
        "testset.gating",
        lambda w, actor: _evals().testset_gating_set(testset=w["testset"], actor=actor),
        _ungated_set,
    ),
    Door(
        "routing policy (canary limits)",
        "routing.policy",
        lambda w, actor: _triage().routing_policy_save(policy=_policy_with_limit(w["agent"], 0.5), actor=actor),
    ),
    Door(
        "canary watch policy",
        "canary_policy.update",
        lambda w, actor: _triage().canary_policy_save(policy=_canary_policy(w["agent"]), actor=actor),
    ),
    Door(
        "issue an API key",
        "apikey.create",
        lambda w, actor: _triage().api_key_create(name="door-key", actor=actor, all_agents=True),
    ),
    Door(
        "bind a deployment",
        "deployment.bind",
        lambda w, actor: _services().deployment_bind(agent=w["agent"], deployment_id=w["deployment_id"], actor=actor),
        _remote_deployment,
    ),
    Door(
        "unbind a deployment",
        "deployment.unbind",
        lambda w, actor: _services().deployment_unbind(binding=w["binding"], actor=actor),
        _bound_deployment,
    ),
    Door(
        "revoke an API key",
        "apikey.revoke",
        lambda w, actor: _triage().api_key_revoke(key=w["key"], actor=actor),
        _issued_key,
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize("door", DOORS, ids=[door.name for door in DOORS])
def test_each_door_refuses_an_actor_without_the_permission_and_audits_one_with_it(door, agent, requester, reviewer):
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from promptctl.errors import DomainError
    from promptctl.models import AuditEvent

    admin = _services().user_create(username="root", role="admin", password="x")
    world = {"agent": agent, "requester": requester, "reviewer": reviewer, "admin": admin}
    door.prepare(world)
    nobody = get_user_model().objects.create_user(username="nobody", password="x", is_staff=True)
    before = AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first()
    with pytest.raises(DomainError), transaction.atomic():
        door.call(world, nobody)
    assert not AuditEvent.objects.filter(sequence__gt=before).exists(), f"{door.name}: a refused call wrote an event"
    # The reviewer approves (four eyes: never the requester); the admin does everything else.
    door.call(world, reviewer if door.verb == "change.approve" else admin)
    events = list(AuditEvent.objects.filter(sequence__gt=before).values_list("verb", flat=True))
    assert any(verb.startswith(door.verb) for verb in events), events
