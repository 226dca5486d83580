"""Celery tasks of the promptctl app.

- ``promptctl.audit_checkpoint()``: publishes the audit chain's head outside
  the database (``promptctl.audit.checkpoints``). Scheduled by
  ``CELERY_BEAT_SCHEDULE`` for deployments running ``celery beat``, and run by
  every worker on its own timer as well (``PROMPTCTL_AUDIT_WORKER_CHECKPOINT``),
  so a lone worker keeps the latest checkpoint fresh. Idempotent: a scheduled
  checkpoint that would repeat a fresh one with the same head is skipped.
- ``promptctl.notification_email``, ``promptctl.webhook_deliver(delivery_id)``
  and ``promptctl.webhook_sweep()``: reviewer notifications, enqueued on commit
  by ``promptctl.services.notifications``; the sweep (beat, every minute)
  re-sends deliveries whose message was lost.
- ``promptctl.deployments_check()``: reads every bound Managed Agents
  deployment and records drift (``promptctl.services.deployments``); beat runs
  it every ``PROMPTCTL_DEPLOYMENTS_CHECK_SECONDS``. Idempotent: a drift already
  recorded is not audited again. ``promptctl.deployments_follow(agent_id,
  channel)``: moves them onto the pin after an apply made inside a caller's
  transaction (``deployments_follow_later``).
"""

from __future__ import annotations

import logging
import threading

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections, connection

from promptctl.audit import CheckpointRefused, audit_checkpoint_publish
from promptctl.services.deployments import DeploymentsBehind, deployments_check_all, deployments_follow_pin
from promptctl.services.notifications import (
    notification_email_send,
    webhook_deliveries_overdue,
    webhook_delivery_attempt,
)
from promptctl.services.webhooks import webhook_delivery_enqueue

logger = logging.getLogger(__name__)


@shared_task(name="promptctl.audit_checkpoint", ignore_result=True)
def audit_checkpoint() -> None:
    try:
        audit_checkpoint_publish(reason="schedule")
    except CheckpointRefused:
        pass  # logged as an error by the publisher; `promptctl audit verify` names what happened


# --- the worker's own checkpoint timer ----------------------------------------------

_stop = threading.Event()


def _checkpoint_forever() -> None:
    interval = max(1.0, settings.PROMPTCTL_AUDIT_CHECKPOINT_SECONDS)
    delay = min(interval, 5.0)  # one soon after start: a restarted worker re-anchors the head
    while not _stop.wait(delay):
        delay = interval
        try:
            close_old_connections()
            audit_checkpoint_publish(reason="schedule")
        except CheckpointRefused:
            pass  # logged as an error by the publisher
        except Exception:  # noqa: BLE001 - the timer must outlive a failed pass (database restarting, disk full)
            logger.exception("audit checkpoint failed; trying again in %.0fs", interval)
        finally:
            connection.close()


@worker_ready.connect
def _start_checkpoint_timer(**_kwargs) -> None:
    if not settings.PROMPTCTL_AUDIT_WORKER_CHECKPOINT:
        return
    _stop.clear()
    threading.Thread(target=_checkpoint_forever, name="audit-checkpoint", daemon=True).start()


@worker_shutdown.connect
def _stop_checkpoint_timer(**_kwargs) -> None:
    _stop.set()


# --- reviewer notifications (promptctl/services/notifications.py) ------------------------------


@shared_task(
    name="promptctl.notification_email",
    ignore_result=True,
    autoretry_for=(OSError,),  # smtplib's errors are OSErrors: a server down or refusing is tried again
    retry_backoff=10,
    retry_kwargs={"max_retries": 4},
)
def notification_email(subject: str, body: str, recipients: list[str]) -> None:
    notification_email_send(subject=subject, body=body, recipients=recipients)


@shared_task(name="promptctl.webhook_deliver", ignore_result=True)
def webhook_deliver(delivery_id: int) -> None:
    """One attempt of one delivery; schedules the next one itself (a repeated or early message is a no-op)."""
    delay = webhook_delivery_attempt(delivery_id=delivery_id)
    if delay is not None:
        webhook_delivery_enqueue(delivery_id=delivery_id, countdown=delay)


@shared_task(name="promptctl.webhook_sweep", ignore_result=True)
def webhook_sweep() -> None:
    """Re-send deliveries whose message was lost (broker down at commit, worker killed mid-attempt)."""
    for delivery_id in webhook_deliveries_overdue():
        webhook_delivery_enqueue(delivery_id=delivery_id)


# --- bound deployments (promptctl/services/deployments.py) ---------------------------------------


@shared_task(name="promptctl.deployments_check", ignore_result=True)
def deployments_check() -> dict[str, int]:
    """Read every bound deployment and record drift; returns how many are not in step, per agent."""
    return {agent: len(findings) for agent, findings in deployments_check_all().items()}


@shared_task(name="promptctl.deployments_follow", ignore_result=True)
def deployments_follow(agent_id: int, channel: str) -> None:
    """Put the bound deployments on the channel's pin as it stands now (a repeat finds them there: a no-op)."""
    from promptctl.models import Agent

    agent = Agent.objects.filter(pk=agent_id).first()
    if agent is None:
        return
    try:
        deployments_follow_pin(agent=agent, channel=channel, actor=None)
    except DeploymentsBehind:
        pass  # recorded on the bindings (behind) and in the audit event; the checks and the admin show them
