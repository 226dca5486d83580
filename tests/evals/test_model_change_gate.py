"""A model upgrade made from a config file goes through the same gate as a prompt change (issue 15, "Done when" 1).

Real SDK over HTTP against the emulator: the production version is exported,
its model edited, the file made into a version, that version scored on the
gating set, compared with production and promoted by a reviewer's approval.
"""

from __future__ import annotations

import pytest

from evals import services as eval_services
from promptctl import config_files, selectors
from promptctl import services as change_services
from tests.triage.support import People, ProductionAgent, eval_run_now, move_pin

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_model_change_from_a_file_is_scored_compared_and_promoted_through_the_gate(emulator, tmp_path):
    people = People()
    production = ProductionAgent(people, default=False)
    agent = production.agent
    path = tmp_path / "ticket-triage.toml"
    path.write_text(selectors.version_config_export(agent=agent)["config_file"], encoding="utf-8")
    path.write_text(path.read_text().replace('id = "claude-sonnet-4-6"', 'id = "claude-opus-4-7"'))

    upgraded = change_services.version_create(
        agent=agent, config=config_files.config_file_read(path), actor=people.requester
    )
    diff = selectors.version_diff(agent=agent, left_number=production.v1, right_number=upgraded.number)
    assert diff.lines() == ["~ model: claude-sonnet-4-6 -> claude-opus-4-7"], "only the model changed"

    run = eval_run_now(version=upgraded, testset_version=production.testset_version, actor=people.requester)
    assert run.status == "finished" and run.results.count() == run.unit_total
    comparison = eval_services.comparison_for_versions(
        agent=agent, baseline_number=production.v1, candidate_number=upgraded.number
    )
    assert not comparison.regressed, comparison.result
    change = move_pin(agent, upgraded.number, people, evidence_ref=f"comparison:{comparison.pk}")

    assert change.status == "applied" and change.approvals.get().reviewer == people.reviewer
    pin = agent.pins.get(channel="production")
    assert pin.version == upgraded and pin.version.model == "claude-opus-4-7"
