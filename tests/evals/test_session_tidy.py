"""Sessions a run left unarchived (a killed worker's, a retried create's) are archived once the run ends."""

import anthropic

from evals import services
from tests.evals.support import execute_all


def test_an_ended_runs_leftover_sessions_are_archived_and_an_active_runs_are_not(
    versions, gating_set, generous_budget, emulator
):
    v1, _v2 = versions
    agent = v1.agent
    run = services.eval_run_start(agent_version=v1, testset_version=gating_set)
    client = anthropic.Anthropic(base_url=emulator.base_url, api_key="x")
    stray = client.beta.sessions.create(
        agent={"type": "agent", "id": agent.remote_id, "version": v1.number},
        environment_id=agent.environment_id,
        metadata={"promptctl_run": str(run.pk), "ticket": "TKT-1001", "attempt": "1"},
    )
    assert services.eval_run_sessions_tidy(run_id=run.pk) == [], "an active run's sessions may still be in use"
    execute_all(run)
    assert services.eval_run_sessions_tidy(run_id=run.pk) == [stray.id]
    assert client.beta.sessions.retrieve(stray.id).archived_at is not None
    assert emulator.stats()["sessions"]["unarchived"] == 0
