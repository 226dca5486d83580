"""The gate's state changed in SQL by whoever owns the database, without an event."""

from __future__ import annotations

from typing import Any

from redteam.context import Context, verify_outcome
from redteam.plays_gate import _v2


def sql_pin_move(context: Context) -> tuple[str, str]:
    agent, v2 = context.agent(), _v2(context)
    context.owner_sql([("UPDATE promptctl_pin SET version_id = %s WHERE agent_id = %s", [v2.pk, agent.pk])])
    return verify_outcome()


def sql_default_switch(context: Context) -> tuple[str, str]:
    context.owner_sql(["UPDATE triage_routingpolicy SET is_default = false"])
    return verify_outcome()


def sql_superuser(context: Context) -> tuple[str, str]:
    context.owner_sql([("UPDATE auth_user SET is_superuser = true WHERE username = %s", ["alice"])])
    return verify_outcome()


def sql_policy_lowered(context: Context) -> tuple[str, str]:
    context.owner_sql(
        [("UPDATE promptctl_agent SET canary_evidence_above_percent = 99 WHERE id = %s", [context.agent().pk])]
    )
    return verify_outcome()


def sql_gating_set_dropped(context: Context) -> tuple[str, str]:
    context.owner_sql(["UPDATE evals_testset SET gating = false"])
    return verify_outcome()


def _rollback_to_v2(context: Context) -> Any:
    """alice files a rollback of production to the regressed v2 (honestly, through promptctl)."""
    from promptctl import services

    return services.change_request_create(
        agent=context.agent(),
        kind="rollback",
        target_number=_v2(context).number,
        reason="back to v2",
        actor=context.user("alice"),
    )


def sql_forged_approval(context: Context) -> tuple[str, str]:
    """An approval by bob written in SQL, the request set approved in SQL, then applied through promptctl."""
    from promptctl import services

    change, bob = _rollback_to_v2(context), context.user("bob")
    now = "2026-01-01 00:00:00"
    context.owner_sql(
        [
            (
                "INSERT INTO promptctl_approval (decision, comment, created_at, requester_id, reviewer_id, change_id) "
                "VALUES ('approve', 'lgtm', %s, %s, %s, %s)",
                [now, change.requested_by_id, bob.pk, change.pk],
            ),
            (
                "UPDATE promptctl_changerequest SET status = 'approved', approved_at = %s WHERE id = %s",
                [now, change.pk],
            ),
        ]
    )
    change.refresh_from_db()
    services.change_request_apply(change=change, actor=context.user("alice"))
    return verify_outcome()


def sql_reviewer_for_a_moment(context: Context) -> tuple[str, str]:
    """alice puts herself in reviewers in SQL, approves a request (not her own) through promptctl, steps down."""
    from promptctl import services

    admin_change = services.change_request_create(
        agent=context.agent(),
        kind="rollback",
        target_number=_v2(context).number,
        reason="x",
        actor=context.user("admin"),
    )
    alice = context.user("alice")
    reviewers = services.roles_ensure()[services.REVIEWERS]
    context.owner_sql([("INSERT INTO auth_user_groups (user_id, group_id) VALUES (%s, %s)", [alice.pk, reviewers.pk])])
    services.change_request_approve(change=admin_change, reviewer=context.user("alice"), comment="fine")
    context.owner_sql([("DELETE FROM auth_user_groups WHERE user_id = %s AND group_id = %s", [alice.pk, reviewers.pk])])
    return verify_outcome()


def sql_password_reset(context: Context) -> tuple[str, str]:
    """bob's password is set in SQL, so that someone else can sign in as bob and approve."""
    from django.contrib.auth.hashers import make_password

    context.owner_sql([("UPDATE auth_user SET password = %s WHERE username = 'bob'", [make_password("i-am-bob-now")])])
    return verify_outcome()


def sql_gating_relabel(context: Context) -> tuple[str, str]:
    """The gating set's billing tickets relabelled in SQL: v2's regression would vanish from the next comparison."""
    context.owner_sql(["UPDATE evals_testcase SET team = 'api-platform' WHERE team = 'billing'"])
    return verify_outcome()
