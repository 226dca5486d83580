"""The canary watch: what a live canary is judged on, and how promptctl ends one that crosses a limit.

Rules, and why:

- A canary is watched for invalid replies and failed sessions (the routing
  policy's limits) and for **disagreement**: a sample of the tickets it
  answered is answered again by the production version
  (``triage.services.shadow.canary_compare``), and the two verdicts' team or
  priority differ. A prompt that answers validly but routes billing tickets to
  api-platform crosses no invalid-output limit; it crosses this one. The rate
  is judged overall and per team of production's verdict (a canary that breaks
  one team is diluted by the others overall), each only after the policy's
  ``min_compared`` calls.
- When a limit is crossed promptctl files the rollback change request (to the
  production version, which ends the canary) as its ``promptctl`` service
  account, with the figures as evidence. One check per canary.
- By default one person must approve that request. An agent's ``auto_end``
  policy is a standing approval given in advance by an eligible reviewer of the
  agent (``canary_policy_save`` refuses anyone else, checks
  ``triage.change_canarypolicy`` and audits the change). Under it, the
  ``promptctl-auto-end`` account approves the request and ``promptctl`` applies
  it at once. Two accounts, because the database refuses an approval by the
  request's own requester (four-eyes, ``approval_reviewer_is_not_requester``);
  the pin still moves only by an approved change request, as its trigger
  insists, and the request, the approval's comment and a ``canary.auto_end``
  audit event name the standing policy and who granted it. The account joins
  the agent's approver group only while some agent's ``auto_end`` is on, as
  an audited part of the policy change, and a database trigger (triage
  migration 0005) refuses its approval of anything but such a rollback of an
  agent with ``auto_end`` on. The standing approval lapses when its
  grantor may no longer approve changes to the agent, and is not trusted when
  the stored policy differs from its last audited change (a row written
  around the service): then promptctl only files the request, says why, and
  asks one person, as with the policy off.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from promptctl import services as change_services
from promptctl.audit import audit_record
from promptctl.errors import DomainError
from promptctl.models import PRODUCTION, Agent, AuditEvent, ChangeRequest, Pin
from promptctl.records import saved_by
from promptctl.services.access import acting_user_bind
from triage import selectors
from triage.models import ERROR_OUTCOMES, CanaryCheck, CanaryCounter, CanaryPolicy, Outcome
from triage.selectors import _canary_limits
from triage.services.common import _require

SYSTEM_USERNAME = "promptctl"
AUTO_END_USERNAME = "promptctl-auto-end"
_POLICY_FIELDS = ("compare_percent", "disagreement_limit", "min_compared", "auto_end")


# --- service accounts ------------------------------------------------------------------------


def _service_account(username: str) -> Any:
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(username=username, defaults={"is_active": True, "is_staff": False})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def system_user_ensure() -> Any:
    """The ``promptctl`` service account that files automatic change requests (a requester; cannot log in)."""
    user_model = get_user_model()
    user = _service_account(SYSTEM_USERNAME)
    if not user.has_perm("promptctl.add_changerequest"):
        groups = change_services.roles_ensure()
        user.groups.add(groups[change_services.REQUESTERS])
        user = user_model.objects.get(pk=user.pk)  # drop the cached permissions
    return user


def _standing_groups_sync(*, actor: Any) -> None:
    """``promptctl-auto-end`` is in the reviewers group and each approver group of an agent with auto-end on, only."""
    reviewers = change_services.roles_ensure()[change_services.REVIEWERS]
    wanted_names = set(
        CanaryPolicy.objects.filter(auto_end=True).values_list("agent__approver_group", flat=True).distinct()
    )
    wanted = {group.pk: group for group in Group.objects.filter(name__in=wanted_names)}
    if wanted:
        wanted[reviewers.pk] = reviewers
    with acting_user_bind(actor):  # the access changes are recorded as the policy changer's
        account = _service_account(AUTO_END_USERNAME)
        current = set(account.groups.values_list("pk", flat=True))
        stale = current - set(wanted)
        if stale:
            account.groups.remove(*stale)
        missing = [group for pk, group in wanted.items() if pk not in current]
        if missing:
            account.groups.add(*missing)


# --- the policy --------------------------------------------------------------------------------


def _policy_snapshot(policy: CanaryPolicy | None) -> dict[str, Any]:
    if policy is None:
        return {}
    snapshot = {name: getattr(policy, name) for name in _POLICY_FIELDS}
    snapshot["auto_end_granted_by"] = _grantor(policy) if policy.auto_end_granted_by_id else None
    return snapshot


def _grantor(policy: CanaryPolicy) -> str:
    granted_by = policy.auto_end_granted_by
    return granted_by.username if granted_by is not None else "nobody"


def canary_policy_save(*, policy: CanaryPolicy, actor: Any) -> CanaryPolicy:
    """Save an agent's canary watch settings; turning ``auto_end`` on records ``actor`` as its grantor.

    Needs ``triage.change_canarypolicy``. Turning ``auto_end`` on also needs
    the actor to be an eligible reviewer of the agent: it approves, in advance,
    every rollback the watch files, so only someone who could approve one may
    grant it.
    """
    _require(actor, "change_canarypolicy", "change an agent's canary policy")
    if not 0 <= policy.compare_percent <= 100:
        raise DomainError("The compare share is a percentage: 0 to 100 (0 turns the disagreement watch off).")
    if not 0 <= policy.disagreement_limit <= 1:
        raise DomainError("The disagreement limit is a share between 0 and 1 (e.g. 0.2 for 20%).")
    if policy.min_compared < 1:
        raise DomainError("The minimum of compared calls must be at least 1.")
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=policy.agent_id)
        stored = CanaryPolicy.objects.select_for_update().filter(agent=agent).first()
        if stored is not None:
            policy.pk = stored.pk
        before = _policy_snapshot(stored)
        was_on = bool(stored and stored.auto_end)
        if policy.auto_end and not was_on:
            if not change_services.reviewer_eligible(user=actor, agent=agent):
                raise DomainError(
                    f"{actor.username} may not turn on automatic canary ending for {agent.name}: it approves "
                    f"promptctl's rollbacks in advance, so only a member of {agent.approver_group!r} who may approve "
                    "changes can grant it. Ask one of them."
                )
            policy.auto_end_granted_by, policy.auto_end_granted_at = actor, timezone.now()
        elif not policy.auto_end:
            policy.auto_end_granted_by, policy.auto_end_granted_at = None, None
        elif stored is not None:
            policy.auto_end_granted_by_id, policy.auto_end_granted_at = (
                stored.auto_end_granted_by_id,
                stored.auto_end_granted_at,
            )
        policy.updated_at = timezone.now()
        saved_by(policy, actor)
        if policy.auto_end != was_on:
            _standing_groups_sync(actor=actor)
        audit_record(
            actor=actor,
            verb="canary_policy.update",
            target=policy,
            agent_id=agent.pk,
            before=before,
            after=_policy_snapshot(policy),
        )
    return policy


# --- rolling counters ----------------------------------------------------------------------------


def canary_counter_add(*, agent_id: int, pin_revision: int, outcome: str) -> None:
    """Count one logged canary call into its pin revision's ``CanaryCounter`` row.

    Call it inside the transaction that inserts the log row, so the counter and
    the log commit (or roll back) together and ``canary_stats`` always equals a
    count over the log. An ``F()`` increment (no read-modify-write); the first
    call of a revision inserts the row in a savepoint, and a concurrent first
    call that loses the unique key falls back to the increment.
    """
    invalid = 1 if outcome == Outcome.INVALID else 0
    errors = 1 if outcome in ERROR_OUTCOMES else 0
    row = CanaryCounter.objects.filter(agent_id=agent_id, pin_revision=pin_revision)
    increments = {"requests": F("requests") + 1, "invalid": F("invalid") + invalid, "errors": F("errors") + errors}
    if row.update(**increments):
        return
    try:
        with transaction.atomic():
            CanaryCounter.objects.create(
                agent_id=agent_id, pin_revision=pin_revision, requests=1, invalid=invalid, errors=errors
            )
    except IntegrityError:
        row.update(**increments)


# --- ending a canary ---------------------------------------------------------------------------


def _standing_approval(agent: Agent) -> tuple[CanaryPolicy | None, str]:
    """The agent's auto-end policy if its standing approval holds now, else None and why not."""
    policy = CanaryPolicy.objects.select_related("auto_end_granted_by").filter(agent=agent, auto_end=True).first()
    if policy is None:
        return None, ""
    granted = (
        AuditEvent.objects.filter(
            verb="canary_policy.update", object_type="triage.canarypolicy", object_id=str(policy.pk)
        )
        .order_by("-sequence")
        .values_list("after", flat=True)
        .first()
    )
    if not granted or granted.get("auto_end") is not True or granted.get("auto_end_granted_by") != _grantor(policy):
        return None, (
            f"automatic ending is on in the database, but no audited canary policy change of {agent.name} says so "
            "(the policy row was written around canary_policy_save), so promptctl does not act on it"
        )
    if not change_services.reviewer_eligible(user=policy.auto_end_granted_by, agent=agent):
        return None, (
            f"automatic ending is on, but {_grantor(policy)}, who granted it, may no longer "
            f"approve changes to {agent.name}, so the standing approval has lapsed"
        )
    return policy, ""


def _auto_end(*, change: ChangeRequest, policy: CanaryPolicy, system_user: Any) -> str:
    """Approve and apply ``change`` under the standing policy; '' when done, else why not (nothing kept)."""
    approver = get_user_model().objects.filter(username=AUTO_END_USERNAME, is_active=True).first()
    if approver is None:
        return f"the {AUTO_END_USERNAME} account is missing or inactive, so no standing approval can be given"
    granted = policy.auto_end_granted_at.isoformat(timespec="seconds") if policy.auto_end_granted_at else "?"
    try:
        with transaction.atomic():
            change_services.change_request_approve(
                change=change,
                reviewer=approver,
                comment=(
                    f"standing approval: canary_auto_end of {change.agent.name}, granted by "
                    f"{_grantor(policy)} at {granted}"
                ),
            )
            change.refresh_from_db()
            change_services.change_request_apply(change=change, actor=system_user)
    except DomainError as refusal:
        return str(refusal)
    return ""


def _evidence(check: CanaryCheck) -> str:
    examples = ", ".join(f"#{request_id}" for request_id in check.examples) or "none"
    return (
        f"canary check of change request #{check.canary_change_id}: {check.summary()}; crossed: "
        f"{check.tripped_by}; disagreeing requests (first): {examples}"
    )


def canary_end(*, agent_id: int, pin_revision: int) -> CanaryCheck | None:
    """File the change request that ends a canary over its limits, with the figures as evidence.

    promptctl is the requester, so any one eligible reviewer may approve it;
    applying it still needs that approval, unless the agent's standing
    ``auto_end`` policy holds (module docstring). One check per canary (a
    unique key on the change request that started it): a repeated task
    returns the first. Does nothing when the pin has moved on or the canary is
    within its limits.
    """
    pin = (
        Pin.objects.select_related("agent", "version", "canary_version")
        .filter(agent_id=agent_id, channel=PRODUCTION)
        .first()
    )
    if pin is None or pin.revision != pin_revision or not pin.canary_version_id:
        return None
    existing = CanaryCheck.objects.filter(canary_change_id=pin.change_id).first()
    if existing is not None:
        return existing
    stats = selectors.canary_stats(agent_id=agent_id, pin_revision=pin_revision)
    limits = _canary_limits(agent_id)
    watch = selectors.canary_watch(agent_id=agent_id, pin_revision=pin_revision)
    crossed = selectors.canary_limits_crossed(stats, limits) + [f"disagreement ({what})" for what in watch.tripped()]
    if not crossed:
        return None
    system_user = system_user_ensure()
    policy, lapsed = _standing_approval(pin.agent)
    check = CanaryCheck(
        agent=pin.agent,
        channel=pin.channel,
        canary_change_id=pin.change_id,
        pin_revision=pin.revision,
        canary_version=pin.canary_version,
        canary_percent=pin.canary_percent,
        requests=stats.requests,
        invalid=stats.invalid,
        errors=stats.errors,
        max_invalid_rate=limits["canary_max_invalid_rate"],
        max_error_rate=limits["canary_max_error_rate"],
        tripped_by=", ".join(crossed)[:200],
        compared=watch.compared,
        disagreements=watch.disagreements,
        max_disagreement_rate=watch.limit,
        min_compared=watch.min_compared,
        labels=watch.labels,
        examples=selectors.canary_disagreement_examples(agent_id=agent_id, pin_revision=pin_revision),
    )
    if policy is not None:
        how = (
            f"Under {pin.agent.name}'s standing canary_auto_end policy (granted by "
            f"{_grantor(policy)}), promptctl approves and applies it at once; if it is still pending, that was "
            "refused and the canary.check audit event says why."
        )
    else:
        how = f"Approving and applying this request sends all traffic back to v{pin.version.number}."
        how += f" ({lapsed}.)" if lapsed else ""
    try:
        with transaction.atomic():
            # Re-read under lock: had the canary been promoted or ended since the first read, a rollback filed
            # now (and approved by a standing policy) would undo a change people approved.
            locked = Pin.objects.select_for_update().filter(pk=pin.pk).values("revision", "canary_version_id").first()
            if locked is None or locked["revision"] != pin_revision or not locked["canary_version_id"]:
                return None
            change = change_services.change_request_create(
                agent=pin.agent,
                kind=ChangeRequest.Kind.ROLLBACK,
                target_number=pin.version.number,
                channel=pin.channel,
                reason=f"promptctl ends the canary automatically: {check.summary()}; crossed: {check.tripped_by}. {how}",
                evidence_ref=_evidence(check),
                actor=system_user,
                filed_by_promptctl=True,
            )
            refused = _auto_end(change=change, policy=policy, system_user=system_user) if policy else ""
            check.auto_ended = policy is not None and not refused
            check.end_change = change
            check.save()
            audit_record(
                actor=system_user,
                verb="canary.auto_end" if check.auto_ended else "canary.check",
                target=check,
                agent_id=pin.agent_id,
                after={
                    "summary": check.summary(),
                    "crossed": check.tripped_by,
                    "examples": check.examples,
                    "end_change": change.pk,
                    "standing_policy_granted_by": _grantor(policy) if policy else None,
                    "auto_end_refused": refused or lapsed or None,
                },
            )
    except IntegrityError:
        return CanaryCheck.objects.filter(canary_change_id=pin.change_id).first()
    return check
