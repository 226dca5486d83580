"""A deployment changed outside promptctl, seen and restored from the agent's admin page in a real browser."""

from __future__ import annotations

import anthropic
import pytest

from promptctl import services
from promptctl.models import AuditEvent, DeploymentBinding
from tests.browser_support import admin_login
from tests.change_control_support import CHANNEL, PASSWORD, V1, V2, promote

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_sync_shows_a_drifted_deployment_and_restore_puts_the_pin_back(browser_page, emulator):
    rita = services.user_create(username="rita", role="requester", password=PASSWORD)
    victor = services.user_create(username="victor", role="reviewer", password=PASSWORD)
    ada = services.user_create(username="ada", role="admin", password=PASSWORD)
    agent = services.agent_create(name="ticket-triage", model="claude-sonnet-4-6", system_prompt=V1, actor=rita)
    first = agent.latest_version_number
    second = services.version_create(agent=agent, system_prompt=V2, actor=rita).number
    promote(agent, first, rita, victor)
    remote = anthropic.Anthropic(base_url=emulator.base_url, api_key="x", max_retries=0)
    digest = remote.beta.deployments.create(
        agent={"type": "agent", "id": agent.remote_id, "version": first},
        environment_id=agent.environment_id,
        name="nightly-digest",
        initial_events=[{"type": "user.message", "content": [{"type": "text", "text": "Digest the night."}]}],
    )
    services.deployment_bind(agent=agent, channel=CHANNEL, deployment_id=digest.id, actor=ada)
    promote(agent, second, rita, victor)
    assert remote.beta.deployments.retrieve(digest.id).agent.version == second
    remote.beta.deployments.update(digest.id, agent={"type": "agent", "id": agent.remote_id, "version": first})

    page = browser_page()
    admin_login(page, username="rita", password=PASSWORD)
    page.goto(f"/admin/promptctl/agent/{agent.pk}/change/")
    assert "in step" in page.inner_text("#deployment-bindings")
    page.click("#sync")
    page.wait_for_selector(".messagelist")
    assert f"Deployment nightly-digest is drifted: version changed outside promptctl: runs v{first}" in page.inner_text(
        ".messagelist"
    )
    assert "changed outside promptctl" in page.inner_text("#deployment-bindings")

    page.click(f"#restore-deployments-{CHANNEL}")
    page.wait_for_selector(".messagelist .success")

    assert f"moved: nightly-digest [{digest.id}] (v{first} → v{second})" in page.inner_text(".messagelist")
    assert remote.beta.deployments.retrieve(digest.id).agent.version == second
    assert DeploymentBinding.objects.get(deployment_id=digest.id).state == "in_step"
    assert AuditEvent.objects.get(verb="deployment.restore").actor_username == "rita"
