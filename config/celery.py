"""The Celery application: ``celery -A config worker`` starts a worker.

Pool, concurrency, acknowledgement and broker options come from Django
settings (``CELERY_*``), so a plain worker command is already tuned for
I/O-bound session work; command-line flags only adjust.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("promptctl")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
