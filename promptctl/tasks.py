"""Celery tasks of the promptctl app.

- ``promptctl.audit_checkpoint()``: publishes the audit chain's head outside
  the database (``promptctl.audit.checkpoints``). Scheduled by
  ``CELERY_BEAT_SCHEDULE`` for deployments running ``celery beat``, and run by
  every worker on its own timer as well (``PROMPTCTL_AUDIT_WORKER_CHECKPOINT``),
  so a lone worker keeps the latest checkpoint fresh. Idempotent: a scheduled
  checkpoint that would repeat a fresh one with the same head is skipped.
"""

from __future__ import annotations

import logging
import threading

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections, connection

from promptctl.audit import CheckpointRefused, audit_checkpoint_publish

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
