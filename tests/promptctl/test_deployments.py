"""Deployments as channels: bound deployments follow the production pin, drift is reported, a retry finishes.

Real SDK over loopback HTTP against the emulator's deployments; changes "outside
promptctl" are made with a second SDK client (``remote_client``).
"""

from __future__ import annotations

import pytest

from promptctl import services
from promptctl.errors import DomainError
from promptctl.models import AuditEvent, DeploymentBinding, Pin
from promptctl.services.common import PermissionRefused
from tests.change_control_support import CHANNEL, V2, promote

# CHANNEL (staging) has no eval gate, so these tests promote without eval runs; production works the same way.
UPDATE_ROUTE = "POST /v1/deployments/{deployment_id}"
# With this seed, the emulator's first fault draw passes and the second fails (fault_500=0.5):
# the first bound deployment's update lands, the second's gets a 500.
SEED_FIRST_PASSES_SECOND_FAILS = 10


def _deploy(remote_client, agent, *, name: str, version: int | None):
    reference = agent.remote_id if version is None else {"type": "agent", "id": agent.remote_id, "version": version}
    return remote_client.beta.deployments.create(
        agent=reference,
        environment_id=agent.environment_id,
        name=name,
        initial_events=[
            {"type": "user.message", "content": [{"type": "text", "text": "Digest last night's tickets."}]}
        ],
    )


def _remote_version(remote_client, deployment_id: str) -> int:
    return remote_client.beta.deployments.retrieve(deployment_id).agent.version


@pytest.fixture
def production(agent, requester, reviewer, admin_user, remote_client):
    """v1 pinned on CHANNEL with two deployments bound to it, and v2 made (not promoted yet)."""
    v1 = agent.latest_version_number
    promote(agent, v1, requester, reviewer)
    digest = _deploy(remote_client, agent, name="nightly-digest", version=v1)
    weekly = _deploy(remote_client, agent, name="weekly-report", version=v1)
    for deployment in (digest, weekly):
        services.deployment_bind(agent=agent, channel=CHANNEL, deployment_id=deployment.id, actor=admin_user)
    v2 = services.version_create(agent=agent, system_prompt=V2, actor=requester).number
    return {"v1": v1, "v2": v2, "ids": [digest.id, weekly.id]}


def test_a_promotion_moves_every_bound_deployment_and_a_rollback_moves_them_back(
    agent, requester, reviewer, remote_client, production
):
    ids = production["ids"]
    assert [DeploymentBinding.objects.get(deployment_id=i).state for i in ids] == ["unpinned", "unpinned"]

    change = promote(agent, production["v2"], requester, reviewer)

    assert [_remote_version(remote_client, i) for i in ids] == [production["v2"]] * 2
    bindings = [DeploymentBinding.objects.get(deployment_id=i) for i in ids]
    assert [(b.state, b.set_version) for b in bindings] == [("in_step", production["v2"])] * 2
    follow = AuditEvent.objects.filter(verb="deployment.follow").latest("sequence")
    assert follow.object_id == str(change.pk)
    assert sorted(follow.after["moved"]) == sorted(ids)
    pin_move = AuditEvent.objects.filter(verb="pin.move").latest("sequence")
    assert pin_move.request_id == follow.request_id and pin_move.sequence < follow.sequence  # one transaction

    rollback = promote(agent, production["v1"], requester, reviewer, kind="rollback")

    assert [_remote_version(remote_client, i) for i in ids] == [production["v1"]] * 2
    back = AuditEvent.objects.filter(verb="deployment.follow").latest("sequence")
    assert back.object_id == str(rollback.pk)
    assert {i: m["to"] for i, m in back.after["moved"].items()} == {i: production["v1"] for i in ids}
    assert Pin.objects.get(agent=agent).version.number == production["v1"]


def test_an_outside_update_is_reported_as_drift_within_one_sync_and_restored(
    agent, requester, reviewer, remote_client, production
):
    promote(agent, production["v2"], requester, reviewer)
    digest, weekly = production["ids"]
    remote_client.beta.deployments.update(
        digest, agent={"type": "agent", "id": agent.remote_id, "version": production["v1"]}
    )
    remote_client.beta.deployments.pause(weekly)

    findings = services.deployments_check(agent=agent)

    by_id = {finding.deployment_id: finding for finding in findings}
    assert set(by_id) == {digest, weekly}
    assert by_id[digest].state == "drifted" and f"runs v{production['v1']}" in by_id[digest].problem
    assert "paused" in by_id[weekly].problem
    assert AuditEvent.objects.filter(verb="deployment.drift").count() == 2
    services.deployments_check(agent=agent)  # the same drift seen again is not audited again
    assert AuditEvent.objects.filter(verb="deployment.drift").count() == 2

    with pytest.raises(PermissionRefused):
        services.deployments_restore(agent=agent, channel=CHANNEL, actor=_nobody())
    outcome = services.deployments_restore(agent=agent, channel=CHANNEL, actor=reviewer)

    assert outcome is not None and set(outcome.moved) == {digest} and outcome.unpaused == [weekly]
    assert _remote_version(remote_client, digest) == production["v2"]
    assert remote_client.beta.deployments.retrieve(weekly).status == "active"
    assert services.deployments_check(agent=agent) == []
    assert AuditEvent.objects.filter(verb="deployment.restore").count() == 1


def test_an_archived_deployment_is_drift_and_is_named_by_the_next_apply(
    agent, requester, reviewer, remote_client, production
):
    digest, weekly = production["ids"]
    remote_client.beta.deployments.archive(weekly)

    findings = {finding.deployment_id: finding for finding in services.deployments_check(agent=agent)}
    assert findings[weekly].state == "drifted" and "archived" in findings[weekly].problem
    assert findings[digest].state == "unpinned"  # bound, not yet moved by an apply

    with pytest.raises(services.DeploymentsBehind) as refused:
        promote(agent, production["v2"], requester, reviewer)
    assert Pin.objects.get(agent=agent).version.number == production["v2"]  # the pin is not held back
    assert f"NOT moved: {weekly}" in str(refused.value) and "archived" in str(refused.value)
    assert _remote_version(remote_client, digest) == production["v2"]
    assert DeploymentBinding.objects.get(deployment_id=weekly).state == "behind"


def test_an_update_failing_mid_apply_is_reported_and_a_retry_finishes_the_rest(
    agent, requester, reviewer, remote_client, production, emulator, settings
):
    digest, weekly = production["ids"]
    settings.PROMPTCTL_MAX_ATTEMPTS = 1
    emulator.configure(fault_500=0.5, fault_routes=UPDATE_ROUTE, seed=SEED_FIRST_PASSES_SECOND_FAILS)
    change = services.change_request_create(
        agent=agent, kind="promote", target_number=production["v2"], reason="v2", actor=requester, channel=CHANNEL
    )
    services.change_request_approve(change=change, reviewer=reviewer)

    with pytest.raises(services.DeploymentsBehind) as refused:
        services.change_request_apply(change=change, actor=reviewer)

    message = str(refused.value)
    assert f"Change request #{change.pk} was applied" in message
    assert f"moved: nightly-digest [{digest}] (v{production['v1']} → v{production['v2']})" in message
    assert f"NOT moved: {weekly} (" in message and "HTTP 500" in message
    assert f"promptctl change apply {change.pk}" in message  # the retry, in the CLI's words
    assert Pin.objects.get(agent=agent).version.number == production["v2"]
    assert _remote_version(remote_client, digest) == production["v2"]
    assert _remote_version(remote_client, weekly) == production["v1"]
    assert DeploymentBinding.objects.get(deployment_id=weekly).state == "behind"
    follow = AuditEvent.objects.filter(verb="deployment.follow").latest("sequence")
    assert list(follow.after["moved"]) == [digest] and list(follow.after["failed"]) == [weekly]

    emulator.configure(fault_500=0.0)
    pin = services.change_request_apply(change=change, actor=reviewer)  # applying again finishes the rest

    assert pin.version.number == production["v2"]
    assert _remote_version(remote_client, weekly) == production["v2"]
    assert {b.state for b in DeploymentBinding.objects.all()} == {"in_step"}
    finish = AuditEvent.objects.filter(verb="deployment.follow").latest("sequence")
    assert list(finish.after["moved"]) == [weekly] and finish.after["already"] == [digest]
    with pytest.raises(DomainError, match="already applied"):
        services.change_request_apply(change=change, actor=reviewer)  # nothing left: an ordinary refusal


def test_a_deployment_on_latest_is_flagged_unpinned_and_pinned_by_the_next_apply(
    agent, requester, reviewer, remote_client, admin_user, emulator
):
    emulator.configure(deployment_latest="float")
    v1 = agent.latest_version_number
    promote(agent, v1, requester, reviewer)
    floating = _deploy(remote_client, agent, name="follows-latest", version=None)
    binding = services.deployment_bind(agent=agent, channel=CHANNEL, deployment_id=floating.id, actor=admin_user)
    assert binding.state == "unpinned" and binding.set_version is None
    v2 = services.version_create(agent=agent, system_prompt=V2, actor=requester).number
    assert _remote_version(remote_client, floating.id) == v2  # floats: production's v1 is not what it runs

    promote(agent, v2, requester, reviewer)
    services.version_create(agent=agent, system_prompt=V2 + "\nv3", actor=requester)

    assert _remote_version(remote_client, floating.id) == v2  # pinned now: a newer version does not move it
    binding.refresh_from_db()
    assert (binding.state, binding.set_version) == ("in_step", v2)


def test_binding_is_checked_and_audited(agent, requester, admin_user, remote_client, production):
    digest = production["ids"][0]
    with pytest.raises(DomainError, match="already bound"):
        services.deployment_bind(agent=agent, channel=CHANNEL, deployment_id=digest, actor=admin_user)
    with pytest.raises(PermissionRefused):
        services.deployment_bind(agent=agent, deployment_id="depl_x", actor=requester)
    binding = DeploymentBinding.objects.get(deployment_id=digest)
    services.deployment_unbind(binding=binding, actor=admin_user)
    assert not DeploymentBinding.objects.filter(deployment_id=digest).exists()
    assert AuditEvent.objects.filter(verb="deployment.bind").count() == 2
    assert AuditEvent.objects.get(verb="deployment.unbind").before["deployment_id"] == digest
    assert binding.history.count() >= 2  # simple-history kept the row's life


def _nobody():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username="nora")  # no role, no permissions


def _cli(*args: str) -> tuple[int, str, str]:
    from tests.cli_support import cli_run

    return cli_run(*args)


def test_the_cli_binds_lists_reports_drift_in_agent_sync_and_restores(
    agent, requester, reviewer, admin_user, remote_client
):
    v1 = agent.latest_version_number
    promote(agent, v1, requester, reviewer)
    digest = _deploy(remote_client, agent, name="nightly-digest", version=v1)
    code, out, err = _cli(
        "deployment", "bind", "--agent", agent.name, "--channel", CHANNEL, "--deployment", digest.id, "--as", "ada"
    )
    assert code == 0, err
    assert f"Bound nightly-digest ({digest.id}) to ticket-triage/{CHANNEL}" in out
    v2 = services.version_create(agent=agent, system_prompt=V2, actor=requester).number
    promote(agent, v2, requester, reviewer)
    remote_client.beta.deployments.update(digest.id, agent=agent.remote_id)  # re-pinned to latest, outside
    services.version_create(agent=agent, system_prompt=V2 + "\nv3", actor=requester)
    remote_client.beta.deployments.update(digest.id, agent=agent.remote_id)

    code, out, err = _cli("agent", "sync", "--agent", agent.name)

    assert code == 0, err
    assert f"WARNING: deployment nightly-digest ({digest.id}) is drifted: version changed outside promptctl" in out
    assert f"promptctl deployment restore --agent ticket-triage --channel {CHANNEL}" in out
    code, out, _ = _cli("deployment", "list")
    assert f"{digest.id} nightly-digest → ticket-triage/{CHANNEL}: drifted (set v{v2}, seen v{v2 + 1} active)" in out

    code, out, err = _cli("deployment", "restore", "--agent", agent.name, "--channel", CHANNEL, "--as", "rita")

    assert code == 0, err
    assert f"on the pin's v{v2}: moved: nightly-digest [{digest.id}] (v{v2 + 1} → v{v2})" in out
    assert _remote_version(remote_client, digest.id) == v2
    code, out, err = _cli("deployment", "unbind", "--deployment", digest.id, "--as", "rita")
    assert code == 1 and "promptctl.delete_deploymentbinding" in err  # a requester may not unbind


def test_the_periodic_task_records_drift_once(agent, requester, reviewer, remote_client, production, eager_tasks):
    from promptctl.tasks import deployments_check

    promote(agent, production["v2"], requester, reviewer)
    remote_client.beta.deployments.archive(production["ids"][0])

    assert deployments_check.delay().get() == {"ticket-triage": 1}
    deployments_check.delay()
    [drift] = AuditEvent.objects.filter(verb="deployment.drift")
    assert drift.object_id == str(DeploymentBinding.objects.get(deployment_id=production["ids"][0]).pk)
    assert "archived outside promptctl" in drift.after["problem"]


def test_deployments_moved_for_an_apply_that_loses_the_race_go_back_on_the_pin(
    transactional_db, agent, requester, reviewer, admin_user, emulator_proxy, remote_client
):
    import re
    import threading

    from promptctl.services.common import ChangeConflict

    v1 = agent.latest_version_number
    promote(agent, v1, requester, reviewer)
    digest = _deploy(remote_client, agent, name="nightly-digest", version=v1)
    services.deployment_bind(agent=agent, channel=CHANNEL, deployment_id=digest.id, actor=admin_user)
    v2 = services.version_create(agent=agent, system_prompt=V2, actor=requester).number
    v3 = services.version_create(agent=agent, system_prompt=V2 + "\nv3", actor=requester).number
    first, second = (
        services.change_request_create(
            agent=agent, kind="promote", target_number=n, reason=f"v{n}", actor=requester, channel=CHANNEL
        )
        for n in (v2, v3)
    )
    for change in (first, second):
        services.change_request_approve(change=change, reviewer=reviewer)

    emulator_proxy.hold_pattern = re.compile(rf"POST /v1/deployments/{digest.id}")
    outcome: dict[str, Exception] = {}

    def apply_second() -> None:
        try:
            services.change_request_apply(change=second, actor=reviewer)
        except Exception as error:  # noqa: BLE001 - the test inspects it
            outcome["error"] = error
        finally:
            from django.db import connection

            connection.close()

    racer = threading.Thread(target=apply_second)
    racer.start()
    assert emulator_proxy.wait_held(1)  # the second apply is moving the deployment to v3, no lock held
    emulator_proxy.hold_pattern = None
    services.change_request_apply(change=first, actor=reviewer)  # not blocked by it: the pin moves to v2
    emulator_proxy.release()
    racer.join(timeout=30)

    assert isinstance(outcome.get("error"), ChangeConflict)  # the second was filed on a pin that moved
    assert Pin.objects.get(agent=agent, channel=CHANNEL).version.number == v2
    assert _remote_version(remote_client, digest.id) == v2  # its v3 was put back on the pin
    put_back = AuditEvent.objects.get(verb="deployment.put_back")
    assert put_back.after["moved"][digest.id] == {"from": v3, "to": v2, "name": "nightly-digest"}
    assert DeploymentBinding.objects.get(deployment_id=digest.id).state == "in_step"


def test_an_apply_inside_a_callers_transaction_moves_the_deployments_after_commit(
    agent, requester, reviewer, remote_client, production, eager_tasks, django_capture_on_commit_callbacks
):
    from django.db import transaction

    change = services.change_request_create(
        agent=agent, kind="promote", target_number=production["v2"], reason="v2", actor=requester, channel=CHANNEL
    )
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with transaction.atomic():  # as the canary's standing auto-end approves and applies in one
            services.change_request_approve(change=change, reviewer=reviewer)
            services.change_request_apply(change=change, actor=reviewer)
            assert {b.state for b in DeploymentBinding.objects.all()} == {"behind"}  # nothing called under locks
            assert [_remote_version(remote_client, i) for i in production["ids"]] == [production["v1"]] * 2

    assert callbacks  # the follow task was enqueued on commit, and ran (eagerly here)
    assert sorted(AuditEvent.objects.get(verb="deployment.follow_queued").after["waiting"]) == sorted(production["ids"])
    assert [_remote_version(remote_client, i) for i in production["ids"]] == [production["v2"]] * 2
    assert {b.state for b in DeploymentBinding.objects.all()} == {"in_step"}
    assert AuditEvent.objects.filter(verb="deployment.follow").latest("sequence").actor_username == ""
