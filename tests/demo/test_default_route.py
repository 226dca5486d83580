"""After the demo, ``POST /api/v1/triage`` answers with the tutorial's agent: the story made it the default route.

The launcher runs as a real process (emulator, Celery worker, web server) on a
temporary state folder; once it serves, the operator's command issues an API
key on the demo's database and the test calls the served API over HTTP. The
route was set the only way there is, an approved and applied ``route`` change
request, so the audit trail names it.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import urllib.request

import pytest

from tests.demo.test_launcher import ROOT, Launcher

pytestmark = pytest.mark.slow


@pytest.fixture
def served_demo(tmp_path):
    running = Launcher(tmp_path / "demo")
    yield running, tmp_path / "demo"
    running.close()


def operator(var_dir, token: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(PROMPTCTL_VAR_DIR=str(var_dir), PROMPTCTL_TOKEN=token)
    done = subprocess.run(
        [sys.executable, "manage.py", "promptctl", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_api_answers_with_the_tutorial_agent_right_after_the_demo(served_demo):
    launcher, var_dir = served_demo
    served = launcher.wait_for(r"Serving the admin at (http://[\d.:]+)/admin/", timeout=600)
    web_url = served.group(1)
    assert re.search(r"change request #\d+: ticket-triage is the triage API's default agent", launcher.output)

    admin_token = re.search(r"admin\s+admin\s+password: \S+\s+token: (\S+)", launcher.output).group(1)
    secret = re.search(r"pctl_\S+", operator(var_dir, admin_token, "apikey", "create", "--name", "after-demo"))
    assert secret, "the operator's command printed the key's secret"
    call = urllib.request.Request(
        f"{web_url}/api/v1/triage",
        data=json.dumps(
            {"subject": "Invoice shows a duplicate charge", "body": "We were billed twice for November."}
        ).encode(),
        headers={"Authorization": f"Bearer {secret.group(0)}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(call, timeout=60) as response:  # a 4xx/5xx raises, naming the status
        assert response.status == 200
        answer = json.loads(response.read())
    assert answer["agent"] == "ticket-triage" and answer["valid"] is True

    with sqlite3.connect(var_dir / "promptctl.sqlite3") as database:
        routed = database.execute(
            "SELECT actor_username, after FROM promptctl_auditevent WHERE verb = 'routing.default'"
        ).fetchall()
    assert len(routed) == 1 and "ticket-triage" in routed[0][1], routed  # audited like any route change
