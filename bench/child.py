"""Benchmarks run in a child process of their own, with a clean, production-like environment.

A benchmark's ``main`` calls ``clean_child_run``: in the process a person
started it re-runs the same module in a temporary var dir and database (never
the installation's own), measured as deployed (DEBUG off, fresh secrets, plain
HTTP on loopback), and returns the child's exit code; in that child it returns
None, and the benchmark runs.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile

from config.processes import BASE_DIR

BENCH_CHILD = "PROMPTCTL_BENCH_CHILD"


def clean_child_run(*, module: str, argv: list[str] | None, database_url: str = "") -> int | None:
    if os.environ.get(BENCH_CHILD) == "1":
        return None
    with tempfile.TemporaryDirectory(prefix=f"promptctl-{module.replace('.', '-')}-") as scratch:
        env = {
            **os.environ,
            BENCH_CHILD: "1",
            "PROMPTCTL_VAR_DIR": scratch,
            "PROMPTCTL_RATE_LIMITER": "off",
            "CELERY_BROKER_URL": "filesystem://localhost//",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "PROMPTCTL_AUDIT_KEY": secrets.token_urlsafe(48),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SECURE_SSL_REDIRECT": "false",
        }
        env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        env.pop("DATABASE_URL", None)
        if database_url:
            env["DATABASE_URL"] = database_url
        child_argv = [sys.executable, "-m", module, *(argv if argv is not None else sys.argv[1:])]
        return subprocess.call(child_argv, cwd=BASE_DIR, env=env)
