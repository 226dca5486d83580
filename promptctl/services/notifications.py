"""Reviewers are told: e-mail and signed webhooks when a change request is filed, decided, applied or withdrawn.

Rules, and why:

- ``change_notify`` is called by every change-request transition
  (``promptctl.services.changes``, ``routes``) in or right after its
  transaction. It writes the webhook deliveries in that transaction (an
  outbox: they exist exactly when the change does) and sends nothing itself:
  e-mail and deliveries go to a Celery worker through
  ``transaction.on_commit``, so a rolled-back change tells nobody, and a slow
  SMTP server or receiver never slows or fails the request.
- Who hears: the active members of the agent's approver group that have an
  e-mail address, except the person who acted; and every active webhook whose
  agent filter (none: all agents) and event filter (empty: all events) match.
- A canary that crosses its limits makes triage file a rollback through
  ``change_request_create`` as the ``promptctl`` service account; that filing
  is the event ``canary.tripped``, and its message says promptctl filed it.
- A delivery is tried until the receiver answers 2xx, at most
  ``PROMPTCTL_WEBHOOK_MAX_ATTEMPTS`` times, waiting ``PROMPTCTL_WEBHOOK_BACKOFF``
  seconds and three times longer after each failure, each attempt bounded by
  ``PROMPTCTL_WEBHOOK_TIMEOUT``. Every attempt is recorded on its row (count,
  last code, last error); the last failure leaves it ``failed``. No database
  lock is held during the HTTP call: the attempt is claimed first (the row's
  ``next_attempt_at`` moves past the call's timeout, so a duplicate message
  waits), then sent, then recorded.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from promptctl.models import ChangeRequest, Webhook, WebhookDelivery
from promptctl.selectors import change_request_as_dict, change_request_decisions
from promptctl.services.webhooks import EVENTS, task_enqueue, webhook_delivery_enqueue, webhook_sign

logger = logging.getLogger(__name__)

EMAIL_TASK = "promptctl.notification_email"
SYSTEM_USERNAME = "promptctl"  # triage's service account that files automatic rollbacks


def change_notify(*, change: ChangeRequest, event: str, actor: Any) -> None:
    """Queue the e-mail and webhook deliveries for ``event`` on ``change``; they leave on commit."""
    if event not in EVENTS:
        raise ValueError(f"unknown notification event {event!r}")
    payload = _event_payload(change=change, event=event, actor=actor)
    recipients = _recipients(change=change, actor=actor)
    hooks = [
        hook
        for hook in Webhook.objects.filter(active=True).filter(Q(agent__isnull=True) | Q(agent_id=change.agent_id))
        if not hook.events or event in hook.events
    ]
    now = timezone.now()
    with transaction.atomic():
        delivery_ids = [
            WebhookDelivery.objects.create(webhook=hook, event=event, payload=payload, next_attempt_at=now).pk
            for hook in hooks
        ]
    if recipients:
        subject, body = payload["subject"], payload["text"]
        transaction.on_commit(partial(_email_enqueue, subject=subject, body=body, recipients=recipients), robust=True)
    for delivery_id in delivery_ids:
        transaction.on_commit(partial(webhook_delivery_enqueue, delivery_id=delivery_id), robust=True)


def _email_enqueue(*, subject: str, body: str, recipients: list[str]) -> None:
    task_enqueue(EMAIL_TASK, subject, body, recipients)


def notification_email_send(*, subject: str, body: str, recipients: list[str]) -> int:
    """Send one notification e-mail (called by the worker's task; raises on SMTP failure so the task retries)."""
    return send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)


def _recipients(*, change: ChangeRequest, actor: Any) -> list[str]:
    members = (
        get_user_model().objects.filter(groups__name=change.agent.approver_group, is_active=True).exclude(email="")
    )
    actor_pk = getattr(actor, "pk", None)
    if actor_pk is not None:
        members = members.exclude(pk=actor_pk)
    return list(members.order_by("email").values_list("email", flat=True).distinct())


def _event_payload(*, change: ChangeRequest, event: str, actor: Any) -> dict[str, Any]:
    actor_name = getattr(actor, "username", None) or "promptctl"
    by_promptctl = actor_name == SYSTEM_USERNAME
    decisions = change_request_decisions(change=change)
    approvers = list(
        change.approvals.filter(decision="approve").order_by("created_at").values_list("reviewer__username", flat=True)
    )
    change_data = change_request_as_dict(change)
    change_data["approvals"] = decisions["approvals"]
    change_data["approved_by"] = approvers
    url = settings.PROMPTCTL_PUBLIC_URL + reverse("admin:promptctl_changerequest_change", args=[change.pk])
    headline = _headline(change=change, event=event, actor_name=actor_name, approvals=decisions["approvals"])
    subject = f"[promptctl] {change.agent.name}: {headline}"
    verdict = (change.evidence or {}).get("summary") or "none attached"
    lines = [
        headline[0].upper() + headline[1:] + ".",
        "",
        f"Agent:     {change.agent.name} ({change.channel})",
        f"Change:    {_what(change)}",
        f"Reason:    {change.reason}",
        f"Filed by:  {change.requested_by.username}"
        + (" (automatically: the canary crossed its limits)" if by_promptctl and event == "canary.tripped" else ""),
        f"Status:    {change.status}" + (f" — {change.status_reason}" if change.status_reason else ""),
        f"Approvals: {decisions['approvals']} of {change.approvals_required}"
        + (f" ({', '.join(approvers)})" if approvers else ""),
        f"Evidence:  {verdict}",
    ]
    if change.accept_regression_reason:
        lines.append(f"Regression accepted because: {change.accept_regression_reason}")
    lines += ["", f"Review it: {url}", ""]
    payload = {
        "event": event,
        "occurred_at": timezone.now(),
        "actor": actor_name,
        "by_promptctl": by_promptctl,
        "subject": subject,
        "text": "\n".join(lines),
        "url": url,
        "change": change_data,
    }
    return json.loads(json.dumps(payload, cls=DjangoJSONEncoder))


def _what(change: ChangeRequest) -> str:
    base = f"v{change.base_version.number}" if change.base_version else "no pin"
    if change.kind == ChangeRequest.Kind.CANARY:
        return f"canary v{change.target_version.number} at {change.canary_percent}% beside {base}"
    if change.kind == ChangeRequest.Kind.ROUTE:
        return f"make {change.agent.name} (v{change.target_version.number}) the default agent"
    return f"{change.kind} {base} → v{change.target_version.number}"


def _headline(*, change: ChangeRequest, event: str, actor_name: str, approvals: int) -> str:
    number = f"change #{change.pk}"
    short = f"{change.kind} v{change.target_version.number}"
    needs = f"needs {change.approvals_required} approval{'s' if change.approvals_required != 1 else ''}"
    if event == "canary.tripped":
        return f"canary tripped — promptctl filed {number}: {short} ({needs})"
    if event == "change.filed":
        return f"{number} filed by {actor_name} — {short} ({needs})"
    if event == "change.approved":
        if change.status == ChangeRequest.Status.APPROVED:
            return f"{number} approved by {actor_name} — {short} is ready to apply"
        return f"{number} approved by {actor_name} — {short} ({approvals} of {change.approvals_required} approvals)"
    if event == "change.rejected":
        return f"{number} rejected by {actor_name} — {short}"
    if event == "change.applied":
        return f"{number} applied by {actor_name} — {short} is live on {change.channel}"
    return f"{number} withdrawn by {actor_name} — {short}"


# --- delivering webhooks (the worker's side) --------------------------------------------------


def webhook_delivery_attempt(*, delivery_id: int) -> float | None:
    """Try ``delivery_id`` once if it is due; the seconds until the next try, or None when there is none."""
    timeout = settings.PROMPTCTL_WEBHOOK_TIMEOUT
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().filter(pk=delivery_id).first()
        now = timezone.now()
        if delivery is None or delivery.status != WebhookDelivery.Status.PENDING:
            return None  # delivered, failed, or unknown: a repeated message is a no-op
        if delivery.next_attempt_at and delivery.next_attempt_at > now + timedelta(seconds=1):
            return None  # claimed by another attempt, or a message for that later time is queued
        delivery.attempts += 1
        delivery.next_attempt_at = now + timedelta(seconds=timeout + 30)  # the claim
        delivery.save(update_fields=["attempts", "next_attempt_at"])
        webhook = Webhook.objects.get(pk=delivery.webhook_id)
    code, error = _post(webhook=webhook, delivery=delivery, timeout=timeout)
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery_id)
        delivery.last_response_code = code
        delivery.last_error = error[:500]
        delay: float | None = None
        if code is not None and 200 <= code < 300:
            delivery.status = WebhookDelivery.Status.DELIVERED
            delivery.delivered_at = timezone.now()
            delivery.next_attempt_at = None
        elif delivery.attempts >= settings.PROMPTCTL_WEBHOOK_MAX_ATTEMPTS:
            delivery.status = WebhookDelivery.Status.FAILED
            delivery.next_attempt_at = None
        else:
            delay = settings.PROMPTCTL_WEBHOOK_BACKOFF * 3 ** (delivery.attempts - 1)
            delivery.next_attempt_at = timezone.now() + timedelta(seconds=delay)
        delivery.save(update_fields=["last_response_code", "last_error", "status", "delivered_at", "next_attempt_at"])
    return delay


def _post(*, webhook: Webhook, delivery: WebhookDelivery, timeout: float) -> tuple[int | None, str]:
    """POST the signed body; (status code or None, an excerpt of the response or the error)."""
    payload = delivery.payload
    if webhook.format == Webhook.Format.SLACK:
        payload = {"text": f"{payload.get('subject', '')}\n{payload.get('url', '')}"}
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        webhook.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "promptctl-webhooks",
            "X-Promptctl-Event": delivery.event,
            "X-Promptctl-Delivery": str(delivery.pk),
            "X-Promptctl-Timestamp": timestamp,
            "X-Promptctl-Signature": webhook_sign(secret=webhook.secret, timestamp=timestamp, body=body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - admins set http(s) URLs
            return response.status, response.read(300).decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read(300).decode("utf-8", "replace") or str(error.reason)
    except (OSError, ValueError) as error:  # refused, timed out, DNS, TLS
        return None, f"{type(error).__name__}: {error}"


def webhook_deliveries_overdue(*, grace_seconds: float = 60.0) -> list[int]:
    """Pending deliveries whose next attempt is overdue (a lost message, a broker down at commit)."""
    cutoff = timezone.now() - timedelta(seconds=grace_seconds)
    return list(
        WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lt=cutoff)
        .order_by("pk")
        .values_list("pk", flat=True)[:500]
    )
