"""Settings for the test suite: ``config.settings`` with a fast password hasher, one state directory per xdist worker.

pytest-django exports ``DJANGO_SETTINGS_MODULE=tests.settings``, so every child
process a test starts (uvicorn, Celery workers, ``manage.py``) loads this
module too: a user created in the test process logs in through them, and they
share the test process's state directory and broker.

Tests run in parallel under pytest-xdist (``-n``). pytest-django gives each
worker its own test database (``..._gw0``); what else a worker keeps must not be
shared either, so before ``config.settings`` reads the environment this module
points, for worker ``gwN``:

- ``PROMPTCTL_VAR_DIR`` at ``<var>/xdist-gwN``: the SQLite test database, the
  filesystem broker's folders and the session budget's file;
- a Redis broker at database index ``15 - N`` of ``CELERY_BROKER_URL``'s server
  (for 15; generally ``index - N`` modulo 16): Celery queues and the session
  budget's key are per database, so no worker takes another's tasks or budget.

The changes are written to ``os.environ`` so child processes inherit them;
``PROMPTCTL_TEST_ISOLATED_FOR`` records the worker they were made for, so a
child (which inherits ``PYTEST_XDIST_WORKER`` too) does not apply them twice.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

REDIS_DATABASES = 16


def _redis_url_for_worker(url: str, worker_number: int) -> str:
    parsed = urllib.parse.urlsplit(url)
    index = int(parsed.path.strip("/") or 0)
    return urllib.parse.urlunsplit(parsed._replace(path=f"/{(index - worker_number) % REDIS_DATABASES}"))


def _isolate_xdist_worker() -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker or os.environ.get("PROMPTCTL_TEST_ISOLATED_FOR") == worker:
        return
    base = Path(os.environ.get("PROMPTCTL_VAR_DIR") or Path(__file__).resolve().parent.parent / "var")
    os.environ["PROMPTCTL_VAR_DIR"] = str(base / f"xdist-{worker}")
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if broker.startswith(("redis://", "rediss://")):
        os.environ["CELERY_BROKER_URL"] = _redis_url_for_worker(broker, int(worker.removeprefix("gw")))
    os.environ["PROMPTCTL_TEST_ISOLATED_FOR"] = worker


_isolate_xdist_worker()
# DEBUG is off by default (production is the default); the suite and the processes it starts run as
# development, with a generated key under the state directory. Tests of production settings set it false.
os.environ.setdefault("DJANGO_DEBUG", "true")

from config.settings import *  # noqa: E402,F401,F403

# PBKDF2 costs about 0.4 s per password on these machines, and every test creates people.
# The hashing algorithm is not what any test is about; logging in still checks the password.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
