"""Deployments as channels: a bound Managed Agents deployment runs the version its channel's pin names.

Rules, and why:

- The pin is promptctl's record; deployments follow it. Applying a request
  that moves a pin's version (``promote``, ``rollback``) first moves every
  deployment bound to that agent and channel on the server (remote first: no
  network call is made under a database write lock), then one transaction
  moves the pin and records which deployments moved (``deployment.follow``,
  beside ``pin.move`` in the same transaction).
- A deployment that could not be moved does not hold the pin back: a rollback
  must not wait for a scheduled job that someone archived. The apply moves the
  pin, marks the binding ``behind``, and then refuses with the names of the
  deployments that moved and of those that did not (``DeploymentsBehind``).
  Applying the same request again, or ``deployment restore``, finishes the rest.
- If the apply's own transaction refuses after the deployments moved (the pin
  moved meanwhile, the gate said no), the deployments are put back on the pin
  as it now stands.
- Drift is what the server shows that promptctl did not set: another version,
  a deployment re-pinned to latest, paused, archived or gone. ``deployments_check``
  (``agent sync`` and the periodic task) records it on the binding and writes
  one ``deployment.drift`` audit event per new finding, not one per sync.
  ``deployments_restore`` puts the channel's pin back on them (the pin is
  already approved, so no new change request is needed) and unpauses one that
  was paused outside promptctl.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from managed_agents import gateway
from promptctl.audit import audit_record
from promptctl.errors import DomainError, Fix
from promptctl.models import PRODUCTION, Agent, ChangeRequest, DeploymentBinding, Pin
from promptctl.records import saved_by
from promptctl.registry import promotion_gate
from promptctl.services.common import _require, permission_require

logger = logging.getLogger(__name__)

# The change kinds that move the version a pin serves: deployments follow them (a canary does not).
FOLLOWING_KINDS = (ChangeRequest.Kind.PROMOTE, ChangeRequest.Kind.ROLLBACK)
# How many times ``deployments_follow_pin`` chases a pin that moves while it works before it gives up.
FOLLOW_ROUNDS = 3


class DeploymentsBehind(gateway.GatewayError):
    """The pin moved (or was already right) but some bound deployments could not be put on it.

    A gateway error (the API answers 502 with code ``deployments_behind``): the
    server failed for some deployments; the message says the pin did move.
    """

    code = "deployments_behind"


@dataclass
class FollowOutcome:
    """What one pass of moving bound deployments to a version did, per deployment id."""

    agent_id: int
    channel: str
    version: int
    moved: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {"from": n|None, "to": n, "name"}
    already: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {"at": n, "name"}
    failed: dict[str, str] = field(default_factory=dict)  # id -> why, in words
    unpaused: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)  # on the version, but paused (and not unpaused here)

    def as_record(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "version": self.version,
            "moved": self.moved,
            "already": sorted(self.already),
            "failed": self.failed,
            "unpaused": self.unpaused,
            "paused": self.paused,
        }

    def words(self) -> str:
        parts = []
        if self.moved:
            parts.append(
                "moved: "
                + ", ".join(f"{_label(i, m)} ({_version_words(m['from'])} → v{m['to']})" for i, m in self.moved.items())
            )
        if self.already:
            parts.append("already there: " + ", ".join(_label(i, m) for i, m in self.already.items()))
        if self.failed:
            parts.append("NOT moved: " + "; ".join(f"{i} ({why})" for i, why in self.failed.items()))
        return "; ".join(parts) or "no deployments are bound"


def _label(deployment_id: str, entry: dict[str, Any]) -> str:
    name = entry.get("name")
    return f"{name} [{deployment_id}]" if name else deployment_id


def _version_words(version: int | None) -> str:
    return f"v{version}" if version is not None else "latest (unpinned)"


# --- bind / unbind ------------------------------------------------------------


def deployment_bind(*, agent: Agent, channel: str = PRODUCTION, deployment_id: str, actor: Any) -> DeploymentBinding:
    """Bind a deployment to ``agent``'s ``channel``: from now on it follows that pin.

    The deployment is read first (it must exist, not be archived, and run this
    agent), and nothing is changed on the server: the binding records what it
    runs now, flagged ``unpinned`` or ``drifted`` when that is not the pin, and
    the next apply (or ``deployment restore``) puts it on the pin.
    """
    permission_require(
        user=actor,
        permission="promptctl.add_deploymentbinding",
        doing="bind deployments",
        next_step=Fix(
            cli="Ask an admin to bind it, or to grant promptctl.add_deploymentbinding.",
            web="Ask an admin to bind it, or to grant the “Can add deployment binding” permission.",
        ),
    )
    deployment_id = (deployment_id or "").strip()
    if not deployment_id:
        raise DomainError("Name the deployment to bind (its id on Managed Agents, e.g. depl_...).")
    remote = gateway.deployment_retrieve(deployment_id=deployment_id)  # before any lock
    if remote.archived:
        raise DomainError(f"Deployment {deployment_id} ({remote.name}) is archived: bind a live deployment instead.")
    if remote.agent_id != agent.remote_id:
        raise DomainError(
            f"Deployment {deployment_id} ({remote.name}) runs agent {remote.agent_id}, not {agent.name} "
            f"({agent.remote_id}): bind it to the agent it runs."
        )
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        existing = DeploymentBinding.objects.select_related("agent").filter(deployment_id=deployment_id).first()
        if existing is not None:
            raise DomainError(
                f"Deployment {deployment_id} is already bound to {existing.agent.name}/{existing.channel}: "
                "unbind it first to bind it elsewhere."
            )
        pin = Pin.objects.select_related("version").filter(agent=agent, channel=channel).first()
        binding = DeploymentBinding(agent=agent, channel=channel, deployment_id=deployment_id, bound_by=actor)
        _seen(binding, remote)
        state, problem = _judge(binding, remote, pin_version=pin.version.number if pin else None)
        binding.state, binding.problem = state, problem
        saved_by(binding, actor)
        audit_record(
            actor=actor,
            verb="deployment.bind",
            target=binding,
            agent_id=agent.pk,
            after=deployment_binding_snapshot(binding),
        )
    return binding


def deployment_unbind(*, binding: DeploymentBinding, actor: Any) -> None:
    """Stop following: the deployment keeps whatever version it runs, and promptctl stops moving and watching it."""
    permission_require(
        user=actor,
        permission="promptctl.delete_deploymentbinding",
        doing="unbind deployments",
        next_step=Fix(
            cli="Ask an admin to unbind it, or to grant promptctl.delete_deploymentbinding.",
            web="Ask an admin to unbind it, or to grant the “Can delete deployment binding” permission.",
        ),
    )
    with transaction.atomic():
        binding = DeploymentBinding.objects.select_for_update().select_related("agent").get(pk=binding.pk)
        before = deployment_binding_snapshot(binding)
        audit_record(actor=actor, verb="deployment.unbind", target=binding, agent_id=binding.agent_id, before=before)
        binding._history_user = actor if getattr(actor, "pk", None) else None  # type: ignore[attr-defined]
        binding.delete()


def deployment_binding_snapshot(binding: DeploymentBinding) -> dict[str, Any]:
    return {
        "deployment_id": binding.deployment_id,
        "name": binding.name,
        "agent": binding.agent.name,
        "channel": binding.channel,
        "state": binding.state,
        "problem": binding.problem,
        "set_version": binding.set_version,
        "seen_version": binding.seen_version,
        "seen_status": binding.seen_status,
    }


# --- reading the server and judging what it shows ------------------------------


def _seen(binding: DeploymentBinding, remote: gateway.RemoteDeployment | None) -> None:
    binding.seen_at = timezone.now()
    if remote is None:
        binding.seen_status = "missing"
        return
    binding.name = remote.name[:200]
    binding.seen_version = remote.version
    binding.seen_status = remote.state


def _judge(
    binding: DeploymentBinding, remote: gateway.RemoteDeployment | None, *, pin_version: int | None
) -> tuple[str, str]:
    """(state, problem) for what the server shows, against what promptctl set (or, never set, the pin)."""
    State = DeploymentBinding.State
    if remote is None:
        return State.DRIFTED, "the deployment no longer exists on the server (deleted outside promptctl)"
    if remote.archived:
        return State.DRIFTED, "archived outside promptctl: it no longer runs; unbind it or bind its replacement"
    if remote.status == "paused":
        why = "paused outside promptctl" if remote.paused_reason in ("", "manual") else "paused by the server"
        return State.DRIFTED, f"{why} ({remote.paused_reason or 'no reason given'}): its schedule does not fire"
    if binding.set_version is None:
        if remote.version is None:
            return State.UNPINNED, "follows the agent's latest version; the next apply pins it"
        if pin_version is not None and remote.version != pin_version:
            return State.UNPINNED, f"runs v{remote.version}, not the pin's v{pin_version}; the next apply moves it"
        if pin_version is None:
            return State.UNPINNED, f"runs v{remote.version}; there is no pin yet, the first promotion pins it"
        return State.UNPINNED, f"already runs the pin's v{pin_version}; the next apply records it as pinned"
    if remote.version is None:
        return State.DRIFTED, f"re-pinned to latest outside promptctl (promptctl set v{binding.set_version})"
    if remote.version != binding.set_version:
        return (
            State.DRIFTED,
            f"version changed outside promptctl: runs v{remote.version}, promptctl set v{binding.set_version}",
        )
    if binding.state == State.BEHIND and pin_version is not None and binding.set_version != pin_version:
        return State.BEHIND, binding.problem or f"still at v{binding.set_version}, the pin is at v{pin_version}"
    return State.IN_STEP, ""


@dataclass(frozen=True)
class DriftFinding:
    deployment_id: str
    name: str
    state: str
    problem: str
    new: bool  # first seen by this check (audited now)


def deployments_check(*, agent: Agent, actor: Any = None) -> list[DriftFinding]:
    """Read every deployment bound to ``agent`` and record what is not as promptctl left it.

    Reads first, then one transaction records the readings. A finding that is
    new (or changed) is audited as ``deployment.drift``; the same drift seen
    again is not audited again, and a deployment back in step is audited as
    ``deployment.in_step``. Returns every binding that is not in step.
    """
    bindings = list(DeploymentBinding.objects.filter(agent=agent).order_by("pk"))
    readings: dict[int, gateway.RemoteDeployment | None] = {}
    for binding in bindings:
        try:
            readings[binding.pk] = gateway.deployment_retrieve(deployment_id=binding.deployment_id)
        except gateway.DeploymentMissing:
            readings[binding.pk] = None
    findings: list[DriftFinding] = []
    with transaction.atomic():
        pins = {pin.channel: pin.version.number for pin in Pin.objects.select_related("version").filter(agent=agent)}
        locked = DeploymentBinding.objects.select_for_update().select_related("agent").filter(pk__in=list(readings))
        for binding in locked.order_by("pk"):
            remote = readings[binding.pk]
            before = deployment_binding_snapshot(binding)
            _seen(binding, remote)
            state, problem = _judge(binding, remote, pin_version=pins.get(binding.channel))
            changed = (state, problem) != (binding.state, binding.problem)
            binding.state, binding.problem = state, problem
            saved_by(binding, actor)
            if changed and state == DeploymentBinding.State.DRIFTED:
                audit_record(
                    actor=actor,
                    verb="deployment.drift",
                    target=binding,
                    agent_id=binding.agent_id,
                    before=before,
                    after=deployment_binding_snapshot(binding),
                )
            elif changed and state == DeploymentBinding.State.IN_STEP:
                audit_record(
                    actor=actor,
                    verb="deployment.in_step",
                    target=binding,
                    agent_id=binding.agent_id,
                    before=before,
                    after=deployment_binding_snapshot(binding),
                )
            if state != DeploymentBinding.State.IN_STEP:
                findings.append(
                    DriftFinding(
                        deployment_id=binding.deployment_id,
                        name=binding.name,
                        state=state,
                        problem=problem,
                        new=changed,
                    )
                )
    return findings


def deployments_check_all(*, actor: Any = None) -> dict[str, list[DriftFinding]]:
    """``deployments_check`` for every agent with bindings (the periodic task); one agent's failure spares the rest."""
    results: dict[str, list[DriftFinding]] = {}
    agent_ids = DeploymentBinding.objects.values_list("agent_id", flat=True).distinct()
    for agent in Agent.objects.filter(pk__in=list(agent_ids)).order_by("pk"):
        try:
            results[agent.name] = deployments_check(agent=agent, actor=actor)
        except gateway.GatewayError:
            results[agent.name] = []  # unreachable now: the next run reads it again
    return results


# --- moving deployments with the pin --------------------------------------------


def deployments_move(*, agent: Agent, channel: str, version: int, unpause: bool = False) -> FollowOutcome:
    """Put every deployment bound to ``agent``/``channel`` on ``version`` (remote only; records nothing).

    Each deployment is moved on its own (``gateway.deployment_pin``:
    read-check-write-verify), so one failure leaves the others moved and the
    outcome names each.
    """
    outcome = FollowOutcome(agent_id=agent.pk, channel=channel, version=version)
    bindings = DeploymentBinding.objects.filter(agent=agent, channel=channel).order_by("pk")
    for binding in bindings:
        try:
            before, after = gateway.deployment_pin(
                deployment_id=binding.deployment_id,
                agent_id=agent.remote_id,
                version=version,
                write_if_equal=binding.set_version is None,  # never pinned by promptctl: it may follow latest
            )
            if after.status == "paused":
                if unpause:
                    gateway.deployment_unpause(deployment_id=binding.deployment_id)
                    outcome.unpaused.append(binding.deployment_id)
                else:
                    outcome.paused.append(binding.deployment_id)
        except gateway.GatewayError as error:
            outcome.failed[binding.deployment_id] = str(error)
            continue
        if before.version == version:
            outcome.already[binding.deployment_id] = {"at": version, "name": after.name}
        else:
            outcome.moved[binding.deployment_id] = {"from": before.version, "to": version, "name": after.name}
    return outcome


def deployments_moves_for_change(*, change: ChangeRequest) -> FollowOutcome | None:
    """Remote first, for ``change_request_apply``: move the bound deployments to the request's target.

    Only for a request that would move the pin's version now (approved, a
    promotion or rollback, filed on the pin's current revision); anything
    else moves nothing here and the apply refuses or applies as it always did.
    Reads only: no lock is held while the server is called.
    """
    if change.kind not in FOLLOWING_KINDS:
        return None
    if _in_callers_transaction():
        return None  # the caller holds a transaction (and maybe locks): ``deployments_follow_later`` instead
    change = ChangeRequest.objects.select_related("target_version").get(pk=change.pk)  # the caller's copy may be old
    if change.status != ChangeRequest.Status.APPROVED:
        return None
    if not DeploymentBinding.objects.filter(agent_id=change.agent_id, channel=change.channel).exists():
        return None
    pin = Pin.objects.filter(agent_id=change.agent_id, channel=change.channel).first()
    if (pin.revision if pin else 0) != change.base_pin_revision:
        return None
    if pin is not None and pin.version_id == change.target_version_id:
        return None  # ending a canary: the version the deployments follow does not change
    if promotion_gate().stale_reason(change=change) is not None:  # the apply will supersede it: move nothing
        return None
    agent = Agent.objects.get(pk=change.agent_id)
    return deployments_move(agent=agent, channel=change.channel, version=change.target_version.number)


def _in_callers_transaction() -> bool:
    """Whether the caller opened a transaction around this call (a test case's own wrapping does not count).

    Django marks the atomic blocks a test case opens around each test; its
    ``durable`` check skips them the same way.
    """
    blocks = transaction.get_connection().atomic_blocks
    return any(not getattr(block, "_from_testcase", False) for block in blocks)


def deployments_follow_record(
    *, outcome: FollowOutcome, actor: Any, change: ChangeRequest | None = None, verb: str = "deployment.follow"
) -> None:
    """Record a move's outcome on the bindings and in one audit event, in the caller's transaction."""
    State = DeploymentBinding.State
    bindings = DeploymentBinding.objects.select_for_update().filter(agent_id=outcome.agent_id, channel=outcome.channel)
    now = timezone.now()
    for binding in bindings.order_by("pk"):
        key = binding.deployment_id
        if key in outcome.moved or key in outcome.already:
            entry = outcome.moved.get(key) or outcome.already[key]
            binding.name = (entry.get("name") or binding.name)[:200]
            binding.set_version = binding.seen_version = outcome.version
            binding.seen_status = "paused" if key in outcome.paused else "active"
            binding.seen_at = now
            binding.state, binding.problem = State.IN_STEP, ""
            if key in outcome.paused:
                binding.state = State.DRIFTED
                binding.problem = f"on v{outcome.version}, but paused outside promptctl: its schedule does not fire"
        elif key in outcome.failed:
            binding.state = State.BEHIND
            binding.problem = f"could not be moved to v{outcome.version}: {outcome.failed[key]}"[:2000]
        else:  # bound after the move was made: the next apply or restore reaches it
            continue
        saved_by(binding, actor)
    audit_record(
        actor=actor,
        verb=verb,
        target=change,
        object_type="" if change is not None else "promptctl.deploymentbinding",
        object_id="" if change is not None else f"{outcome.channel}",
        agent_id=outcome.agent_id,
        after={**outcome.as_record(), "change": change.pk if change is not None else None},
    )


def deployments_behind_refusal(
    *, agent: Agent, outcome: FollowOutcome, change: ChangeRequest | None
) -> DeploymentsBehind:
    """The refusal an apply or restore raises (after its transaction committed) when some deployments did not move."""
    done = (
        f"Change request #{change.pk} was applied: the {outcome.channel} pin of {agent.name} is at v{outcome.version}"
        if change is not None
        else f"The {outcome.channel} pin of {agent.name} is at v{outcome.version}"
    )
    retry_cli = (
        f"`promptctl change apply {change.pk}` again" if change is not None else "`promptctl deployment restore`"
    )
    return DeploymentsBehind(
        f"{done}, but not every bound deployment follows it. {outcome.words()}.",
        fix=Fix(
            cli=f"Fix what stopped them (or unbind an archived one), then run {retry_cli} or "
            f"`promptctl deployment restore --agent {agent.name} --channel {outcome.channel}` to finish the rest.",
            web="Fix what stopped them (or unbind an archived one), then press “Restore deployments to the pin” "
            "on the agent's page to finish the rest.",
            link=("admin:promptctl_agent_change", (agent.pk,)),
        ),
    )


def deployments_follow_pin(
    *,
    agent: Agent,
    channel: str,
    actor: Any,
    change: ChangeRequest | None = None,
    verb: str = "deployment.follow",
    unpause: bool = False,
) -> FollowOutcome | None:
    """Put the bound deployments on the channel's pin as it stands, then record it (remote first, then record).

    Used to finish an apply whose deployments did not all move, to restore
    drifted ones, and to undo moves made for an apply that was then refused.
    If the pin moves while this works, it starts over on the new pin (a few
    times at most). Returns None when there is no pin; raises
    ``DeploymentsBehind`` (after recording) when some could not be moved.
    """
    outcome: FollowOutcome | None = None
    for _round in range(FOLLOW_ROUNDS):
        pin = Pin.objects.select_related("version").filter(agent=agent, channel=channel).first()
        if pin is None:
            return None
        outcome = deployments_move(agent=agent, channel=channel, version=pin.version.number, unpause=unpause)
        with transaction.atomic():
            Agent.objects.select_for_update().get(pk=agent.pk)  # the apply's lock order: agent, then pin
            now = Pin.objects.select_for_update(of=("self",)).select_related("version").get(pk=pin.pk)
            if now.version_id != pin.version_id:
                continue  # the pin moved while the deployments were being moved: follow it again
            deployments_follow_record(outcome=outcome, actor=actor, change=change, verb=verb)
        break
    if outcome is not None and outcome.failed:
        raise deployments_behind_refusal(agent=agent, outcome=outcome, change=change)
    return outcome


def deployments_restore(*, agent: Agent, channel: str = PRODUCTION, actor: Any) -> FollowOutcome | None:
    """Put the channel's pin back on every bound deployment (drifted, behind, unpinned) and unpause paused ones.

    Needs the permission to apply change requests: it moves what a deployment
    runs, though only to the version the pin's approved request already chose,
    so no new request is filed. Audited as ``deployment.restore``.
    """
    _require(actor, "apply_changerequest", "restore deployments to their pin")
    if not DeploymentBinding.objects.filter(agent=agent, channel=channel).exists():
        raise DomainError(f"No deployment is bound to {agent.name}/{channel}: there is nothing to restore.")
    if not Pin.objects.filter(agent=agent, channel=channel).exists():
        raise DomainError(
            f"{agent.name} has no {channel} pin yet: there is nothing to restore the deployments to; "
            "promote a version first."
        )
    return deployments_follow_pin(agent=agent, channel=channel, actor=actor, verb="deployment.restore", unpause=True)


def deployments_put_back(*, agent_id: int, channel: str, actor: Any) -> None:
    """After an apply refused once its deployments had moved: put them on the pin as it stands (best effort).

    Never raises: the apply's own refusal is what the caller must hear. What
    this cannot fix, the next check reports as drift.
    """
    agent = Agent.objects.get(pk=agent_id)
    try:
        deployments_follow_pin(agent=agent, channel=channel, actor=actor, verb="deployment.put_back")
    except Exception:  # noqa: BLE001 - best effort; drift detection reports what stays wrong
        logger.warning("could not put the deployments of %s/%s back on the pin", agent.name, channel, exc_info=True)


def deployments_finish_apply(*, change: ChangeRequest, actor: Any) -> Pin | None:
    """Applying an applied request again finishes its deployments: those ``behind`` or ``unpinned`` follow the pin.

    Only while the request is what set the pin (a later request took over
    otherwise) and some binding is left to move; else None, and the apply
    refuses as for any applied request.
    """
    if change.kind not in FOLLOWING_KINDS:
        return None
    status = ChangeRequest.objects.filter(pk=change.pk).values_list("status", flat=True).first()
    if status != ChangeRequest.Status.APPLIED:
        return None
    pin = Pin.objects.filter(agent_id=change.agent_id, channel=change.channel, change_id=change.pk).first()
    unfinished = DeploymentBinding.objects.filter(
        agent_id=change.agent_id,
        channel=change.channel,
        state__in=[DeploymentBinding.State.BEHIND, DeploymentBinding.State.UNPINNED],
    )
    if pin is None or not unfinished.exists():
        return None
    change = ChangeRequest.objects.get(pk=change.pk)
    deployments_follow_pin(agent=change.agent, channel=change.channel, actor=actor, change=change)
    return Pin.objects.select_related("version", "canary_version", "agent").get(pk=pin.pk)


def deployments_follow_later(*, agent: Agent, channel: str, version: int, actor: Any) -> list[str]:
    """In the caller's transaction: bindings not on ``version`` are marked ``behind``, and follow it after commit.

    For an apply made inside a caller's own transaction (the canary's standing
    auto-end approves and applies in one), where calling the server would hold
    its locks: the deployments are moved by a task once the pin's move is
    committed (``promptctl.deployments_follow``). Returns the deployment ids left to move.
    """
    State = DeploymentBinding.State
    pending = (
        DeploymentBinding.objects.select_for_update()
        .filter(agent=agent, channel=channel)
        .exclude(state=State.IN_STEP, set_version=version)
        .order_by("pk")
    )
    waiting: list[str] = []
    for binding in pending:
        if binding.state == State.DRIFTED:
            continue  # changed outside promptctl: a person looks at it and restores it
        binding.state = State.BEHIND
        binding.problem = f"the pin moved to v{version}; promptctl moves this deployment in the background"
        saved_by(binding, actor)
        waiting.append(binding.deployment_id)
    if waiting:
        audit_record(
            actor=actor,
            verb="deployment.follow_queued",
            object_type="promptctl.deploymentbinding",
            object_id=channel,
            agent_id=agent.pk,
            after={"channel": channel, "version": version, "waiting": waiting},
        )
        from promptctl.tasks import deployments_follow  # a service enqueues its task on commit (docs/ARCHITECTURE.md)

        agent_id = agent.pk
        transaction.on_commit(lambda: deployments_follow.delay(agent_id, channel))
    return waiting
