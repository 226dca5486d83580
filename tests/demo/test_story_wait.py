"""The story's eval-run wait stops on a queue nobody consumes, with the one-line hint, not after its long timeout."""

from __future__ import annotations

import time

import pytest

from demo.story import Story
from evals import services as eval_services
from evals.models import EvalRun
from promptctl.errors import DomainError
from tests.evals.support import TICKETS

pytestmark = pytest.mark.slow


def test_run_and_wait_with_no_worker_stops_within_the_stale_window(transactional_db, agent, requester, settings):
    settings.PROMPTCTL_WORKER_STALE_SECONDS = 1
    testset = eval_services.testset_import(
        name="tickets", data=TICKETS.read_bytes(), filename=TICKETS.name, agent=agent, gating=False, actor=requester
    ).version
    lines: list[str] = []
    story = Story(web_url="http://127.0.0.1:9", write=lines.append, run_timeout=600)
    began = time.monotonic()
    with pytest.raises(DomainError, match=r"no Celery worker is consuming \(none seen for 1 s\)") as refused:
        story.run_and_wait(agent_version=agent.versions.get(), testset_version=testset, actor=requester)
    assert time.monotonic() - began < 10
    assert "celery -A config worker" in str(refused.value)
    assert EvalRun.objects.get().status == EvalRun.Status.QUEUED
    from config.celery import app

    app.control.purge()  # its units, which no worker took, must not reach a later test's worker
