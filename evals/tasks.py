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
Under a prefork pool each child beats too, from its first task, so a job's
lease follows the process that runs it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from celery import shared_task
from celery.signals import worker_process_init, worker_process_shutdown, worker_ready, worker_shutdown
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


class _Heartbeat:
    """One process's heartbeat: a timer thread beating (hostname, pid) until stopped, then removing its row."""

    def __init__(self, hostname: str, pid: int, *, pool_parent_pid: int | None = None) -> None:
        self.identity = (str(hostname)[:255], pid)
        self.pool_parent_pid = pool_parent_pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_forever, name="evals-heartbeat", daemon=True)

    def start(self) -> _Heartbeat:
        self._thread.start()
        return self

    def _beat_forever(self) -> None:
        hostname, pid = self.identity
        started_at = timezone.now()
        interval = max(0.5, settings.PROMPTCTL_WORKER_STALE_SECONDS / 3)
        delay = 0.0  # the first beat at once: a waiting `eval run --wait` sees the worker as soon as it is ready
        while not self._stop.wait(delay):
            delay = interval
            try:
                close_old_connections()
                worker_services.worker_heartbeat_beat(
                    hostname=hostname, pid=pid, started_at=started_at, pool_parent_pid=self.pool_parent_pid
                )
            except Exception:  # noqa: BLE001 - a missed beat (database restarting) must not end the heartbeat
                logger.exception("worker heartbeat failed; trying again in %.0fs", interval)
            finally:
                connection.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)  # a beat in flight must not write the row back after it is removed
        try:
            hostname, pid = self.identity
            worker_services.worker_heartbeat_remove(hostname=hostname, pid=pid)
        except Exception:  # noqa: BLE001 - a shutdown must finish; the row goes stale on its own
            logger.exception("could not remove this process's heartbeat; it goes stale on its own")
        finally:
            connection.close()


_worker_heartbeat: list[_Heartbeat] = []  # the worker's own, once ready
_pool_child_heartbeat: list[_Heartbeat] = []  # a prefork pool child's, from its first task
_pool_child: list[bool] = []  # set in a prefork pool's child process
_pool_child_lock = threading.Lock()


def worker_identity(hostname: str | None = None) -> tuple[str, int]:
    """(node name, pid) of the process running this task as its heartbeat row names it: who holds a lease.

    With the default threads pool that is the worker, known once it is ready.
    In a prefork pool's child it is the child, which starts its own heartbeat
    at its first task (so a lease it holds ends when it dies, not when its
    worker does). Before that, or outside a worker, the task's node name (or
    this host's name) and this process's pid.
    """
    node = str(hostname or socket.gethostname())[:255]
    if _pool_child:
        with _pool_child_lock:
            if not _pool_child_heartbeat:
                _pool_child_heartbeat.append(_Heartbeat(node, os.getpid(), pool_parent_pid=os.getppid()).start())
            return _pool_child_heartbeat[0].identity
    if _worker_heartbeat:
        return _worker_heartbeat[0].identity
    return (node, os.getpid())


@worker_ready.connect
def _start_heartbeat(sender=None, **_kwargs) -> None:
    # The Celery node name (``-n test-1@host``) when there is one: it tells two workers on one host apart.
    hostname = str(getattr(sender, "hostname", None) or socket.gethostname())
    _stop_heartbeat()  # a second ready (an embedded worker started again) must not orphan the first beat
    _worker_heartbeat[:] = [_Heartbeat(hostname, os.getpid()).start()]


@worker_shutdown.connect
def _stop_heartbeat(**_kwargs) -> None:
    while _worker_heartbeat:
        _worker_heartbeat.pop().stop()


@worker_process_init.connect
def _mark_pool_child(**_kwargs) -> None:
    # A forked child inherits its worker's state: it beats for itself, never in the worker's name.
    _pool_child[:] = [True]
    _pool_child_heartbeat.clear()
    _worker_heartbeat.clear()


@worker_process_shutdown.connect
def _stop_pool_child_heartbeat(**_kwargs) -> None:
    while _pool_child_heartbeat:
        _pool_child_heartbeat.pop().stop()
