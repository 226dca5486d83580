"""``python -m redteam.play --backend B --results FILE``: the Django side of ``python -m redteam``.

Migrates, starts a Celery worker, plays the tutorial's story as the baseline,
stops the worker, and keeps a copy of the baseline (the SQLite file, or a
PostgreSQL template database) and of the files promptctl keeps outside the
database (audit checkpoints). Each attack then starts from a fresh copy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import time
import traceback
from pathlib import Path


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


class Baseline:
    """The state every attack starts from, and how to put it back."""

    def __init__(self, backend: str) -> None:
        from django.conf import settings

        self.backend = backend
        self.var_dir = Path(settings.VAR_DIR)
        self.copy_dir = self.var_dir / "baseline"
        self.outside_files = [Path(p) for p in _outside_files()]

    # --- database copies ----------------------------------------------------------

    def _database_name(self) -> str:
        from django.db import connection

        return str(connection.settings_dict["NAME"])

    def _postgres_admin(self):
        import psycopg

        return psycopg.connect(os.environ["PROMPTCTL_REDTEAM_POSTGRES"] + "/postgres", autocommit=True)

    def save(self) -> None:
        from django.db import connections

        connections.close_all()
        self.copy_dir.mkdir(parents=True, exist_ok=True)
        if self.backend == "sqlite":
            raw = sqlite3.connect(self._database_name())
            try:
                raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                raw.close()  # (sqlite3's context manager commits but does not close)
            shutil.copyfile(self._database_name(), self.copy_dir / "promptctl.sqlite3")
        else:
            name = self._database_name()
            with self._postgres_admin() as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}_base"')
                admin.execute(f'CREATE DATABASE "{name}_base" TEMPLATE "{name}"')
        for path in self.outside_files:
            if path.exists():
                shutil.copyfile(path, self.copy_dir / path.name)

    def restore(self) -> None:
        from django.db import connections

        connections.close_all()
        if self.backend == "sqlite":
            name = self._database_name()
            for suffix in ("-wal", "-shm"):
                Path(name + suffix).unlink(missing_ok=True)
            shutil.copyfile(self.copy_dir / "promptctl.sqlite3", name)
        else:
            name = self._database_name()
            with self._postgres_admin() as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{name}_base"')
        for path in self.outside_files:
            saved = self.copy_dir / path.name
            if saved.exists():
                shutil.copyfile(saved, path)
            else:
                path.unlink(missing_ok=True)


def _outside_files() -> list[str]:
    """Files promptctl keeps outside the database that an attack may meet (the audit checkpoints)."""
    from django.conf import settings

    found = [getattr(settings, "PROMPTCTL_AUDIT_CHECKPOINT_FILE", "")]
    return [str(path) for path in found if path]


def _postgres_reset(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(url + "/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def _baseline_play(backend: str) -> None:
    from django.core.management import call_command

    from config.processes import process_argv
    from config.stack import Stack
    from demo.story import Story

    call_command("migrate", "--noinput", verbosity=0)
    stack = Stack(env=dict(os.environ), log_dir=Path(os.environ["PROMPTCTL_VAR_DIR"]) / "logs")
    stack.start("worker", process_argv("worker"))
    try:
        lines: list[str] = []
        Story(
            web_url="http://127.0.0.1:0", write=lines.append, run_timeout=300, goalposts=False, model_upgrade=False
        ).play()
    finally:
        stack.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m redteam.play")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--only", action="append", default=[])
    options = parser.parse_args(argv)
    if options.backend == "postgres":
        url = os.environ["PROMPTCTL_REDTEAM_POSTGRES"]
        _postgres_reset(url, os.environ["DATABASE_URL"].rsplit("/", 1)[1])
    _setup_django()
    from redteam.attacks import ATTACKS, Context

    started = time.monotonic()
    _baseline_play(options.backend)
    baseline = Baseline(options.backend)
    baseline.save()
    print(f"redteam: {options.backend}: baseline ready in {time.monotonic() - started:.0f}s", flush=True)

    rows = []
    for attack in ATTACKS:
        if options.only and attack.name not in options.only:
            continue
        if options.backend not in attack.backends:
            continue
        baseline.restore()
        context = Context(backend=options.backend, var_dir=baseline.var_dir)
        try:
            outcome, how = attack.play(context)
        except Exception as error:  # noqa: BLE001 - an attack that crashes is reported, not hidden
            traceback.print_exc()
            outcome, how = "NOT CAUGHT", f"the attack script itself failed: {type(error).__name__}: {error}"
        rows.append({"backend": options.backend, "attack": attack.name, "outcome": outcome, "how": how})
        print(f"redteam: {options.backend}: {attack.name}: {outcome}", flush=True)
    Path(options.results).write_text(json.dumps(rows, indent=2))
    return 1 if any(row["outcome"] in ("NOT CAUGHT", "FALSE ALARM") for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
