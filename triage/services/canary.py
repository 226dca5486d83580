"""Ending a canary over its limits: promptctl files the rollback change request, with the numbers as evidence."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from promptctl import services as change_services
from promptctl.models import PRODUCTION, ChangeRequest, Pin
from triage import selectors
from triage.models import CanaryCheck
from triage.selectors import _canary_limits, _over

SYSTEM_USERNAME = "promptctl"


# --- canary limits ---------------------------------------------------------------------------


def system_user_ensure() -> Any:
    """The ``promptctl`` service account that files automatic change requests (a requester; cannot log in)."""
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(
        username=SYSTEM_USERNAME, defaults={"is_active": True, "is_staff": False}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    if not user.has_perm("promptctl.add_changerequest"):
        groups = change_services.roles_ensure()
        user.groups.add(groups[change_services.REQUESTERS])
        user = user_model.objects.get(pk=user.pk)  # drop the cached permissions
    return user


def canary_end(*, agent_id: int, pin_revision: int) -> CanaryCheck | None:
    """File the change request that ends a canary over its limits, with the numbers as its evidence.

    promptctl is the requester, so any one eligible reviewer may approve it;
    applying it still needs that approval. One check per canary (a unique key
    on the change request that started it): a repeated task returns the first.
    Does nothing when the pin has moved on or the canary is back within limits.
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
    if not _over(stats, limits):
        return None
    system_user = system_user_ensure()
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
    )
    summary = check.summary()
    try:
        with transaction.atomic():
            change = change_services.change_request_create(
                agent=pin.agent,
                kind=ChangeRequest.Kind.ROLLBACK,
                target_number=pin.version.number,
                channel=pin.channel,
                reason=(
                    f"promptctl ends the canary automatically: {summary}. Approving and applying this request "
                    f"sends all traffic back to v{pin.version.number}."
                ),
                evidence_ref=f"canary check of change request #{pin.change_id}: {summary}",
                actor=system_user,
                filed_by_promptctl=True,
            )
            check.end_change = change
            check.save()
    except IntegrityError:
        return CanaryCheck.objects.filter(canary_change_id=pin.change_id).first()
    return check
