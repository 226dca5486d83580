"""Workers' heartbeats: the one record of which Celery workers are alive.

Rules, and why:

- Each worker process writes its own row (hostname, pid) every third of
  ``PROMPTCTL_WORKER_STALE_SECONDS`` from a timer thread (``evals.tasks``),
  and deletes it on a clean shutdown. Under a prefork pool each child that
  runs a task beats too (``pool_parent_pid`` names its worker), because a
  job's lease names the process that runs it; children are not counted as
  workers. A worker killed outright leaves a row
  that stops moving; readers count only rows seen within the stale window
  (``evals.selectors.workers_alive``), so it drops out on its own.
- A database row, not a broker key or a file: it works the same for Redis,
  the embedded filesystem broker and workers on other hosts, and every reader
  (CLI, admin, both APIs) already has the database.
- Heartbeats are operational state, not change control: no permission, no
  audit event (one row per worker every few seconds would drown the trail).
  Rows long dead (ten stale windows) are pruned by the live workers' beats.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from evals.models import WorkerHeartbeat

PRUNE_WINDOWS = 10


def worker_heartbeat_beat(*, hostname: str, pid: int, started_at: datetime, pool_parent_pid: int | None = None) -> None:
    """Say this worker process (or pool child of worker ``pool_parent_pid``) is alive now; forget the long dead."""
    now = timezone.now()
    with transaction.atomic():
        # pool_parent_pid too: a new process may reuse a dead one's pid while its row is still kept.
        updated = WorkerHeartbeat.objects.filter(hostname=hostname, pid=pid).update(
            seen_at=now, pool_parent_pid=pool_parent_pid
        )
        if not updated:
            WorkerHeartbeat.objects.update_or_create(
                hostname=hostname,
                pid=pid,
                defaults={"started_at": started_at, "seen_at": now, "pool_parent_pid": pool_parent_pid},
            )
    cutoff = now - timedelta(seconds=PRUNE_WINDOWS * settings.PROMPTCTL_WORKER_STALE_SECONDS)
    WorkerHeartbeat.objects.filter(seen_at__lt=cutoff).delete()


def worker_heartbeat_remove(*, hostname: str, pid: int) -> None:
    """A worker shutting down cleanly stops counting at once."""
    WorkerHeartbeat.objects.filter(hostname=hostname, pid=pid).delete()
