"""Outgoing webhooks: made and changed by admins, signed per attempt, retried on a worker.

Rules, and why:

- A webhook's secret is made here (``whsec_`` + 32 random bytes), shown once to
  the admin who made or rotated it, and never written to the audit trail or the
  webhook's history: whoever reads those must not be able to forge deliveries.
- Making or changing a webhook needs ``promptctl.add_webhook`` /
  ``promptctl.change_webhook`` (admins) and is audited (``webhook.create``,
  ``webhook.update``): a webhook decides who outside promptctl hears of changes.
- Every attempt is signed afresh: ``X-Promptctl-Signature: sha256=HEX`` where
  HEX is HMAC-SHA256(secret, timestamp + "." + body) and the timestamp is also
  sent (``X-Promptctl-Timestamp``). Putting the timestamp under the MAC lets a
  receiver refuse a replayed old delivery: an attacker who captured one cannot
  change its timestamp without the secret (docs/OPERATIONS.md, "Notifications").
- "Retry now" (``webhook_delivery_retry``) puts a delivery back in the queue
  for one more attempt, even a failed one, and is audited (``webhook.retry``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from promptctl.audit import audit_record
from promptctl.errors import DomainError
from promptctl.models import Agent, Webhook, WebhookDelivery
from promptctl.records import saved_by
from promptctl.services.common import permission_require

EVENTS = (
    "change.filed",
    "change.approved",
    "change.rejected",
    "change.applied",
    "change.withdrawn",
    "canary.tripped",
)
WEBHOOK_DELIVER_TASK = "promptctl.webhook_deliver"


@dataclass(frozen=True)
class IssuedWebhook:
    webhook: Webhook
    secret: str | None  # set when made or rotated: shown once, then only masked


def webhook_sign(*, secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Promptctl-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds, as sent)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def webhook_secret_masked(secret: str) -> str:
    return f"{secret[:10]}…{'•' * 8}" if secret else ""


def _snapshot(webhook: Webhook) -> dict[str, Any]:
    return {
        "url": webhook.url,
        "events": list(webhook.events),
        "agent": webhook.agent.name if webhook.agent_id and webhook.agent else None,
        "format": webhook.format,
        "active": webhook.active,
        "secret": webhook_secret_masked(webhook.secret),
    }


def webhook_fields_clean(*, url: str, events: list[str] | None, format: str) -> tuple[str, list[str]]:
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DomainError(f"Webhook URL {url!r} is not an http(s) URL: give the receiver's full address.")
    events = sorted(set(events or []))
    unknown = [name for name in events if name not in EVENTS]
    if unknown:
        raise DomainError(f"Unknown event(s) {', '.join(unknown)}: choose from {', '.join(EVENTS)} (none: all).")
    if format not in Webhook.Format.values:
        raise DomainError(f"Unknown format {format!r}: choose json or slack.")
    return url, events


def _admin_required(actor: Any, doing: str, permission: str) -> None:
    permission_require(
        user=actor,
        permission=f"promptctl.{permission}",
        doing=doing,
        next_step="Ask an admin: webhooks decide who outside promptctl hears of changes.",
    )


def webhook_create(
    *,
    actor: Any,
    url: str,
    events: list[str] | None = None,
    format: str = Webhook.Format.JSON,
    agent: Agent | None = None,
    active: bool = True,
) -> IssuedWebhook:
    """Make a webhook and its secret (returned once)."""
    _admin_required(actor, "add webhooks", "add_webhook")
    url, events = webhook_fields_clean(url=url, events=events, format=format)
    secret = "whsec_" + secrets.token_urlsafe(32)
    with transaction.atomic():
        webhook = saved_by(
            Webhook(url=url, events=events, format=format, agent=agent, active=active, secret=secret), actor
        )
        audit_record(actor=actor, verb="webhook.create", target=webhook, after=_snapshot(webhook))
    return IssuedWebhook(webhook=webhook, secret=secret)


def webhook_update(
    *,
    webhook: Webhook,
    actor: Any,
    url: str,
    events: list[str] | None,
    format: str,
    agent: Agent | None,
    active: bool,
    rotate_secret: bool = False,
) -> IssuedWebhook:
    """Change a webhook; ``rotate_secret`` makes a new secret (returned once) and the old one stops verifying."""
    _admin_required(actor, "change webhooks", "change_webhook")
    url, events = webhook_fields_clean(url=url, events=events, format=format)
    with transaction.atomic():
        webhook = Webhook.objects.select_for_update(of=("self",)).select_related("agent").get(pk=webhook.pk)
        before = _snapshot(webhook)
        webhook.url, webhook.events, webhook.format, webhook.agent, webhook.active = url, events, format, agent, active
        secret = None
        if rotate_secret:
            secret = webhook.secret = "whsec_" + secrets.token_urlsafe(32)
        saved_by(webhook, actor)
        after = _snapshot(webhook)
        after["secret_rotated"] = rotate_secret
        audit_record(actor=actor, verb="webhook.update", target=webhook, before=before, after=after)
    return IssuedWebhook(webhook=webhook, secret=secret)


def webhook_delivery_retry(*, delivery: WebhookDelivery, actor: Any) -> WebhookDelivery:
    """Queue one more attempt of ``delivery`` now (a failed one gets exactly one; a pending one keeps its schedule)."""
    _admin_required(actor, "retry webhook deliveries", "change_webhook")
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        if delivery.status == WebhookDelivery.Status.DELIVERED:
            raise DomainError(f"Delivery #{delivery.pk} was delivered already: nothing to retry.")
        before = {"status": delivery.status, "attempts": delivery.attempts}
        delivery.status = WebhookDelivery.Status.PENDING
        delivery.next_attempt_at = timezone.now()
        delivery.save(update_fields=["status", "next_attempt_at"])
        audit_record(
            actor=actor,
            verb="webhook.retry",
            target=delivery,
            before=before,
            after={"status": delivery.status, "webhook": delivery.webhook_id, "event": delivery.event},
        )
        delivery_id = delivery.pk
        transaction.on_commit(lambda: webhook_delivery_enqueue(delivery_id=delivery_id), robust=True)
    return delivery


def webhook_delivery_enqueue(*, delivery_id: int, countdown: float = 0.0) -> None:
    task_enqueue(WEBHOOK_DELIVER_TASK, delivery_id, countdown=countdown)


def task_enqueue(name: str, *args: Any, countdown: float = 0.0) -> None:
    """Queue the Celery task ``name`` (a lazy import: ``promptctl.tasks`` calls these services)."""
    from promptctl import tasks

    task = {
        "promptctl.webhook_deliver": tasks.webhook_deliver,
        "promptctl.notification_email": tasks.notification_email,
    }
    task[name].apply_async(args=list(args), countdown=countdown or None)
