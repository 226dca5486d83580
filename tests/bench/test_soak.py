"""The broker soak (bench/soak.py) runs end to end on the embedded broker and reports nothing lost.

A short version of the ``make bench`` step, through real processes: producer
processes, two Celery workers on ``config.broker:Transport``, the JSON report.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from config.processes import BASE_DIR


@pytest.mark.slow
def test_a_short_soak_on_the_embedded_broker_loses_duplicates_and_crashes_nothing(tmp_path):
    report = tmp_path / "soak.json"
    argv = [sys.executable, "-m", "bench.soak", "--broker", "filesystem", "--tasks", "200", "--producers", "2"]
    argv += ["--workers", "2", "--timeout", "120", "--json", str(report)]
    process = subprocess.run(argv, cwd=BASE_DIR, capture_output=True, text=True, timeout=200)
    assert process.returncode == 0, process.stdout + process.stderr
    (row,) = json.loads(report.read_text())["soaks"]
    assert row["transport"] == "config.broker:Transport"
    assert (row["sent"], row["processed"]) == (200, 200)
    assert (row["lost"], row["duplicated"], row["worker_crashes"], row["left_in_broker"]) == (0, 0, 0, 0)
    assert row["worker_exit_codes"] == [0, 0]
