"""Attacks through promptctl's own doors (the services a shell or the admin calls), and bad input."""

from __future__ import annotations

from typing import Any

from django.db import connection

from redteam.context import NOT_CAUGHT, Context, cli_refused, refused, runtime_role_tries


def _v2(context: Context) -> Any:
    """The tutorial's regressed version: the newest one."""
    return context.agent().versions.order_by("-number").first()


def approval_delete(context: Context) -> tuple[str, str]:
    def delete() -> int:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM promptctl_approval")
            return cursor.rowcount

    return refused(delete)


def change_reinsert(context: Context) -> tuple[str, str]:
    """Delete an approved change request to insert it again aimed at another version, keeping its approvals."""
    from promptctl.models import ChangeRequest

    change = ChangeRequest.objects.filter(approvals__decision="approve").order_by("-pk").first()

    def delete_and_reinsert() -> str:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM promptctl_changerequest WHERE id = %s", [change.pk])
        return f"change request #{change.pk} deleted"

    return refused(delete_and_reinsert)


def runtime_role_rewrites(context: Context) -> tuple[str, str]:
    """The web process's own database login (the runtime role) tries to wipe or rewrite the record."""
    return runtime_role_tries(
        [
            "TRUNCATE promptctl_approval",
            "DELETE FROM promptctl_auditevent",
            "UPDATE promptctl_auditsegment SET archived_at = now()",
            "UPDATE promptctl_agentversion SET system_prompt = 'rewritten'",
            "DROP TRIGGER IF EXISTS promptctl_approval_immutable ON promptctl_approval",
        ]
    )


def runtime_role_erases_early(context: Context) -> tuple[str, str]:
    """The runtime role, which runs the retention purge, tries to erase ticket text and history before the policy allows.

    It holds UPDATE on the log's text columns and DELETE on history tables for the purge; the guards
    ``db roles`` installs bound both by the retention floor the owner set, which the role may only read.
    """
    logged = context.rows("SELECT id FROM triage_triagerequest ORDER BY id DESC LIMIT 1")
    statements = [
        "DELETE FROM promptctl_historicalchangerequest",
        "DELETE FROM promptctl_historicalagent",
        "UPDATE promptctl_retentionfloor SET ticket_text_days = 0, history_days = 0",
        "DELETE FROM promptctl_retentionfloor",
        "DROP TRIGGER promptctl_historicalchangerequest_delete_retention ON promptctl_historicalchangerequest",
    ]
    if logged:
        statements.append(
            "UPDATE triage_triagerequest SET subject = '', body = '', reply = '', request_key = '', "
            f"redacted_at = now() WHERE id = {logged[0][0]}"
        )
    return runtime_role_tries(statements)


def sock_puppet_reviewer(context: Context) -> tuple[str, str]:
    """A superuser makes a reviewer of a user of their own (the user admin, or a shell: the same ORM edge)."""
    from django.contrib.auth import get_user_model

    from promptctl import services
    from promptctl.models import AuditEvent
    from promptctl.services.access import acting_user_bind

    admin = context.user("admin")
    reviewers = services.roles_ensure()[services.REVIEWERS]
    with acting_user_bind(admin):
        puppet = get_user_model().objects.create_user(username="mallory", password="puppet-pass-123", is_staff=True)
        puppet.groups.add(reviewers)
    events = list(AuditEvent.objects.filter(object_type="auth.user", object_id=str(puppet.pk)).order_by("sequence"))
    granted = [event for event in events if "reviewers" in (event.after or {}).get("groups", [])]
    if not granted:
        return NOT_CAUGHT, "the new reviewer left no audit event"
    event = granted[0]
    return "recorded", (
        f"audit event #{event.sequence} {event.verb}: {event.actor_username or 'no one'} put {puppet.username} "
        "in reviewers; every approval they give names them"
    )


def confusable_reviewer(context: Context) -> tuple[str, str]:
    from promptctl import services

    return refused(lambda: services.user_create(username="b\u043eb", role="reviewer", password="x"))


def canary_99(context: Context) -> tuple[str, str]:
    from promptctl import services

    return refused(
        lambda: services.change_request_create(
            agent=context.agent(),
            kind="canary",
            target_number=_v2(context).number,
            canary_percent=99,
            reason="just a canary",
            actor=context.user("alice"),
        )
    )


def default_agent_switch(context: Context) -> tuple[str, str]:
    """A superuser unticks "default" on the routing policy (the admin's save calls this service)."""
    from triage.models import RoutingPolicy
    from triage.services import routing_policy_save

    policy = RoutingPolicy.objects.get(is_default=True)
    policy.is_default = False
    return refused(lambda: routing_policy_save(policy=policy, actor=context.user("admin")))


def gating_set_swap(context: Context) -> tuple[str, str]:
    """v2 is approved on evidence from the gating set; then the tickets it got wrong are dropped from the set."""
    import json

    from django.db.models import F

    from demo.story import TESTSET_NAME
    from evals import services as eval_services
    from evals.models import Comparison, TestSetVersion
    from promptctl import services

    agent, alice, admin = context.agent(), context.user("alice"), context.user("admin")
    comparison = Comparison.objects.order_by("-pk").first()
    change = services.change_request_create(
        agent=agent,
        kind="promote",
        target_number=_v2(context).number,
        reason="v2 again",
        actor=alice,
        evidence_ref=f"comparison:{comparison.pk}",
        accept_regression_reason="billing is handled by hand",
    )
    services.change_request_approve(change=change, reviewer=context.user("bob"), comment="ok")
    services.change_request_approve(change=change, reviewer=context.user("carol"), comment="ok")
    # Whatever the set holds now, the cases the comparison's candidate got wrong are dropped from it (or, when
    # the set holds none of them any more, its last case: any change of contents must make the request stale).
    current = TestSetVersion.objects.filter(testset__agent=agent, testset__gating=True).order_by("-number").first()
    cases = list(current.cases.order_by("position"))
    wrong = set(
        comparison.candidate_run.results.exclude(predicted_team=F("case__team")).values_list(
            "case__external_id", flat=True
        )
    )
    dropped = {case.external_id for case in cases if case.external_id in wrong} or {cases[-1].external_id}
    kept = [
        json.dumps({"id": c.external_id, "subject": c.subject, "body": c.body, "team": c.team, "priority": c.priority})
        for c in cases
        if c.external_id not in dropped
    ]
    eval_services.testset_import(
        name=TESTSET_NAME, data="\n".join(kept) + "\n", file_format="jsonl", agent=agent, actor=admin
    )
    return refused(lambda: services.change_request_apply(change=change, actor=alice))


def nul_prompt(context: Context) -> tuple[str, str]:
    from promptctl import services
    from promptctl.models import AgentVersion

    agent = context.agent()
    before = AgentVersion.objects.filter(agent=agent).count()
    outcome, how = refused(
        lambda: services.version_create(agent=agent, system_prompt="Route tickets.\x00", actor=context.user("alice"))
    )
    synced = services.agent_sync(agent=context.agent(), actor=context.user("alice"))
    stuck = AgentVersion.objects.filter(agent=agent).count() != before or synced.unstorable
    if outcome == "refused" and not stuck:
        return outcome, how + " (no remote version was made; the agent still syncs)"
    return NOT_CAUGHT, f"{how}; agent stuck or a version was made: {stuck}"


def dev_zero_import(context: Context) -> tuple[str, str]:
    import os
    import time
    import uuid

    from promptctl import services

    admin = context.user("admin")  # at their own keyboard: the CLI acts as the owner of PROMPTCTL_TOKEN
    issued = services.token_create(user=admin, actor=admin, name=f"redteam-{uuid.uuid4().hex[:8]}", expires_in_days=1)
    os.environ["PROMPTCTL_TOKEN"] = issued.secret
    started = time.monotonic()
    try:
        outcome, how = cli_refused(
            "testset", "import", "/dev/zero", "--name", "zeros", "--format", "jsonl", "--as", "admin"
        )
    finally:
        os.environ.pop("PROMPTCTL_TOKEN", None)
    return outcome, f"{how} (after {time.monotonic() - started:.1f}s)"


def cli_as_another(context: Context) -> tuple[str, str]:
    """alice, at the operator's CLI with her own token, approves her own request as bob (``--as bob``)."""
    import os
    import uuid

    from promptctl import services

    alice = context.user("alice")
    change = services.change_request_create(
        agent=context.agent(), kind="rollback", target_number=_v2(context).number, reason="x", actor=alice
    )
    issued = services.token_create(user=alice, actor=alice, name=f"redteam-{uuid.uuid4().hex[:8]}", expires_in_days=1)
    os.environ["PROMPTCTL_TOKEN"] = issued.secret
    try:
        return cli_refused("change", "approve", str(change.pk), "--as", "bob")
    finally:
        os.environ.pop("PROMPTCTL_TOKEN", None)
