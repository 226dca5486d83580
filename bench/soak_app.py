"""The broker soak's own Celery app: ``celery -A bench.soak_app worker`` (started by ``python -m bench.soak``).

It reads the same ``CELERY_*`` Django settings as ``config/celery.py`` — the
same broker URL, transport class (``config.broker:Transport`` for the
embedded broker) and transport options, pool, concurrency, prefetch and late
acknowledgement — so the soak measures the broker as production runs it.
What it leaves out, on purpose: Django's set-up (``fixups=[]``) and the apps'
tasks and worker signals, so a soak worker needs no database and runs no
sweeps; its one task only records that it ran.

``bench.soak_record(n)`` appends ``n`` and a newline to a file of its own per
worker process in ``PROMPTCTL_SOAK_RECORDS``, with one ``O_APPEND`` write, so
every delivery leaves exactly one line: a number seen twice is a duplicate
delivery, a number never seen is a lost message.
"""

from __future__ import annotations

import os
import socket

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

RECORDS_ENV = "PROMPTCTL_SOAK_RECORDS"
READY_ENV = "PROMPTCTL_SOAK_READY"  # a folder: each worker leaves a file there once it consumes
# For comparison only (``python -m bench.soak --transport ...``): another transport class for the same broker URL.
TRANSPORT_ENV = "PROMPTCTL_SOAK_TRANSPORT"

app = Celery("promptctl-soak", fixups=[])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.beat_schedule = {}
if os.environ.get(TRANSPORT_ENV):
    app.conf.broker_transport = os.environ[TRANSPORT_ENV]


@app.task(name="bench.soak_record")
def soak_record(n: int, padding: str = "") -> None:
    """Record one delivery of message ``n``: one line in this worker process's file (``padding`` only adds size)."""
    path = os.path.join(os.environ[RECORDS_ENV], f"{socket.gethostname()}-{os.getpid()}.txt")
    handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(handle, f"{n}\n".encode())
    finally:
        os.close(handle)


@signals.worker_ready.connect
def _worker_ready(**_kwargs: object) -> None:
    """Tell the soak this worker consumes: it starts the producers, and later stops workers, only after that."""
    with open(os.path.join(os.environ[READY_ENV], str(os.getpid())), "w"):
        pass
