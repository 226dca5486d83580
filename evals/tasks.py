"""Celery tasks of the evals app. Each takes ids, calls one service, and is idempotent.

- ``evals.run_unit(run_id, case_id, attempt)``: one (ticket, attempt) of a run.
  A result already recorded, or a run no longer active, makes it a no-op, so a
  redelivered or duplicated message is harmless. Transient upstream failures
  are retried by Celery with backoff; the last try records an ``error`` result
  so the run still ends.
- ``evals.tidy_run_sessions(run_id)``: after a run ends, archives any session
  tagged with it that nobody archived (a killed worker's, a retried create's).
- ``evals.sweep_runs()``: resumes runs that stopped progressing. Scheduled by
  ``CELERY_BEAT_SCHEDULE`` for deployments running ``celery beat``, and run
  by every worker on a timer as well (``PROMPTCTL_EVAL_WORKER_SWEEP``), so a
  lone ``celery -A config worker`` recovers lost units on its own. The same
  timer runs the sweeps other apps register (``registry.worker_sweeps``:
  triage's async jobs and shadow runs).

Every worker also writes a heartbeat row (``evals.services.workers``) from a
timer thread started on ``worker_ready`` and deletes it on ``worker_shutdown``,
so the CLI, the run page and the APIs can say when nothing consumes the queue.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from evals import services
from evals.services import workers as worker_services
from promptctl import registry

logger = logging.getLogger(__name__)

UNIT_TRIES = 4  # one try plus three Celery retries of a transient failure


@shared_task(name="evals.run_unit", bind=True, max_retries=UNIT_TRIES - 1, ignore_result=True, acks_late=True)
def run_unit(self, run_id: int, case_id: int, attempt: int) -> None:
    task_try = self.request.retries + 1
    try:
        services.eval_unit_execute(
            run_id=run_id, case_id=case_id, attempt=attempt, task_try=task_try, last_try=task_try >= UNIT_TRIES
        )
    except services.UnitRetryLater as error:
        logger.info(
            "unit (run %s, case %s, attempt %s) retried in %.1fs: %s", run_id, case_id, attempt, error.countdown, error
        )
        raise self.retry(countdown=error.countdown)


@shared_task(
    name="evals.tidy_run_sessions", ignore_result=True, autoretry_for=(Exception,), retry_backoff=5, max_retries=3
)
def tidy_run_sessions(run_id: int) -> None:
    services.eval_run_sessions_tidy(run_id=run_id)


@shared_task(name="evals.sweep_runs", ignore_result=True)
def sweep_runs() -> None:
    resumed = services.eval_runs_sweep()
    if resumed:
        logger.warning("sweep resumed runs %s", resumed)
    _registered_sweeps(settings.PROMPTCTL_EVAL_SWEEP_SECONDS)


# --- the worker's own sweep timer ---------------------------------------------------

_stop = threading.Event()


def _sweep_forever() -> None:
    interval = max(1.0, settings.PROMPTCTL_EVAL_SWEEP_SECONDS)
    # First pass soon after start: a worker replacing a dead one picks up its stalled runs.
    delay = min(interval, 2.0)
    while not _stop.wait(delay):
        delay = interval
        try:
            close_old_connections()
            services.eval_runs_sweep()
        except Exception:  # noqa: BLE001 - the timer must outlive a failed pass (database restarting, ...)
            logger.exception("eval sweep failed; trying again in %.0fs", interval)
        finally:
            connection.close()
        _registered_sweeps(interval)


def _registered_sweeps(interval: float) -> None:
    """The other apps' sweeps of lost work (``registry.worker_sweep_register``), each on its own."""
    for sweep in registry.worker_sweeps():
        try:
            close_old_connections()
            sweep()  # each sweep logs what it sent again
        except Exception:  # noqa: BLE001 - one failing sweep must not stop the others or the timer
            logger.exception("sweep %s failed; trying again in %.0fs", getattr(sweep, "__qualname__", sweep), interval)
        finally:
            connection.close()


@worker_ready.connect
def _start_sweep_timer(**_kwargs) -> None:
    if not settings.PROMPTCTL_EVAL_WORKER_SWEEP:
        return
    _stop.clear()
    threading.Thread(target=_sweep_forever, name="evals-sweep", daemon=True).start()


@worker_shutdown.connect
def _stop_sweep_timer(**_kwargs) -> None:
    _stop.set()


# --- the worker's heartbeat ---------------------------------------------------------

_heartbeat_stop = threading.Event()
_heartbeat_threads: list[threading.Thread] = []
_heartbeat_identity: list[tuple[str, int]] = []  # (hostname, pid) of this worker, once ready


def _heartbeat_forever(hostname: str, pid: int) -> None:
    started_at = timezone.now()
    interval = max(0.5, settings.PROMPTCTL_WORKER_STALE_SECONDS / 3)
    delay = 0.0  # the first beat at once: a waiting `eval run --wait` sees the worker as soon as it is ready
    while not _heartbeat_stop.wait(delay):
        delay = interval
        try:
            close_old_connections()
            worker_services.worker_heartbeat_beat(hostname=hostname, pid=pid, started_at=started_at)
        except Exception:  # noqa: BLE001 - a missed beat (database restarting) must not end the heartbeat
            logger.exception("worker heartbeat failed; trying again in %.0fs", interval)
        finally:
            connection.close()


def worker_identity(hostname: str | None = None) -> tuple[str, int]:
    """(node name, pid) of this worker process as its heartbeat row names it: who holds a task's lease.

    Known once the worker is ready (the default threads pool runs tasks in
    that process). Before that, or outside a worker, the task's node name (or
    this host's name) and this process's pid.
    """
    if _heartbeat_identity:
        return _heartbeat_identity[0]
    return (str(hostname or socket.gethostname())[:255], os.getpid())


@worker_ready.connect
def _start_heartbeat(sender=None, **_kwargs) -> None:
    _heartbeat_stop.clear()
    # The Celery node name (``-n test-1@host``) when there is one: it tells two workers on one host apart.
    hostname = str(getattr(sender, "hostname", None) or socket.gethostname())[:255]
    _heartbeat_identity[:] = [(hostname, os.getpid())]
    thread = threading.Thread(
        target=_heartbeat_forever, args=_heartbeat_identity[0], name="evals-heartbeat", daemon=True
    )
    thread.start()
    _heartbeat_threads.append(thread)


@worker_shutdown.connect
def _stop_heartbeat(**_kwargs) -> None:
    _heartbeat_stop.set()
    while _heartbeat_threads:  # a beat in flight must not write the row back after it is removed
        _heartbeat_threads.pop().join(timeout=5)
    try:
        for hostname, pid in _heartbeat_identity:
            worker_services.worker_heartbeat_remove(hostname=hostname, pid=pid)
    except Exception:  # noqa: BLE001 - a shutdown must finish; the row goes stale on its own
        logger.exception("could not remove this worker's heartbeat; it goes stale on its own")
    finally:
        connection.close()
