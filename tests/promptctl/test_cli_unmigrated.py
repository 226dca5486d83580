"""``manage.py promptctl`` on a database nobody migrated says so in one line (e.g. var/ after ``make demo``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]


def manage(*argv: str, var_dir: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PROMPTCTL_TOKEN")}
    env.update(PROMPTCTL_VAR_DIR=str(var_dir), DJANGO_DEBUG="true", **extra)
    return subprocess.run(
        [sys.executable, "manage.py", *argv], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow  # a migrate of a fresh SQLite database takes most of its 15 s
def test_an_unmigrated_database_is_one_line_naming_the_fix(tmp_path):
    for argv, extra in ((("change", "list"), {}), (("change", "approve", "3"), {"PROMPTCTL_TOKEN": "pctlu_x"})):
        result = manage("promptctl", *argv, var_dir=tmp_path, **extra)
        assert result.returncode == 1, result.stderr
        assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith(f"error: the database {tmp_path / 'promptctl.sqlite3'} is not migrated")
        assert "python manage.py migrate" in result.stderr and "PROMPTCTL_VAR_DIR=var/demo" in result.stderr

    # Once migrated, the same command works (the message is for the unmigrated case only).
    assert manage("migrate", "--noinput", "-v", "0", var_dir=tmp_path).returncode == 0
    listed = manage("promptctl", "--json", "change", "list", var_dir=tmp_path)
    assert listed.returncode == 0 and listed.stdout.strip() == "[]", listed.stderr
