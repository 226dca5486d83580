"""The Celery application: ``celery -A config worker`` starts a worker.

Pool, concurrency, acknowledgement and broker options come from Django
settings (``CELERY_*``), so a plain worker command is already tuned for
I/O-bound session work; command-line flags only adjust.
"""

import os

from celery import Celery, signals

from managed_agents.sdk import sdk_preload

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("promptctl")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_init.connect
def _sdk_loaded(**_kwargs: object) -> None:
    """A worker exists to run sessions: load the SDK at start-up, not on the first unit's clock."""
    sdk_preload()
