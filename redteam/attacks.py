"""The insider's attacks, each played from the baseline (the tutorial's story: v1 in production, v2 regressed).

An attack returns ``(outcome, how)``: ``refused`` (promptctl or the database
said no; ``how`` quotes it), ``detected`` (it happened, and ``audit verify``
names it), ``recorded`` (it is allowed, and the audit trail names who did it),
or ``NOT CAUGHT``. Attackers use the doors an insider has: the services (as a
shell would), raw SQL as the database owner or on the SQLite file (triggers
dropped where they stand in the way), and the runtime database role.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import connection

NOT_CAUGHT = "NOT CAUGHT"


@dataclass
class Context:
    backend: str
    var_dir: Path

    def user(self, username: str) -> Any:
        from django.contrib.auth import get_user_model

        return get_user_model().objects.get(username=username)

    def agent(self) -> Any:
        from demo.story import AGENT_NAME
        from promptctl.models import Agent

        return Agent.objects.get(name=AGENT_NAME)

    def owner_sql(self, statements: list[str | tuple[str, list]]) -> None:
        """Run SQL (``%s`` parameters) as whoever owns the data: the SQLite file's holder, or PostgreSQL's owner.

        The file's holder drops every trigger first; PostgreSQL's owner switches them off for the session.
        """
        statements = [(each, []) if isinstance(each, str) else each for each in statements]
        connection.close()
        if self.backend == "sqlite":
            raw = sqlite3.connect(str(connection.settings_dict["NAME"]), isolation_level=None)
            try:
                raw.execute("BEGIN")
                for (trigger,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
                    raw.execute(f'DROP TRIGGER "{trigger}"')
                for statement, params in statements:
                    raw.execute(statement.replace("%s", "?"), params)
                raw.execute("COMMIT")
            finally:
                raw.close()
        else:
            with connection.cursor() as cursor:
                cursor.execute("SET session_replication_role = replica")  # the owner switches the triggers off
                for statement, params in statements:
                    cursor.execute(statement, params)
                cursor.execute("SET session_replication_role = DEFAULT")

    def rows(self, sql: str, params: list | None = None) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(sql, params or [])
            return list(cursor.fetchall())


def verify_outcome() -> tuple[str, str]:
    """``audit verify`` after an attack on the record: detected (with its words) or not."""
    from promptctl.audit import audit_verify

    result = audit_verify()
    if result.ok:
        return NOT_CAUGHT, f"audit verify passed: {result.message}"
    return "detected", f"audit verify: {result.message}"


def refused(call: Callable[[], Any]) -> tuple[str, str]:
    """Run a door's call; a DomainError (or a database refusal) is the outcome we want."""
    from django.db import DatabaseError, transaction

    from promptctl.errors import DomainError

    try:
        with transaction.atomic():
            result = call()
    except DomainError as error:
        return "refused", f"promptctl: {error}"
    except DatabaseError as error:
        return "refused", f"the database: {str(error).strip().splitlines()[0]}"
    return NOT_CAUGHT, f"it went through: {result!r}"[:300]


@dataclass(frozen=True)
class Attack:
    name: str
    play: Callable[[Context], tuple[str, str]]
    backends: tuple[str, ...] = field(default=("sqlite", "postgres"))


# --- the control: no attack ---------------------------------------------------------------------


def control(context: Context) -> tuple[str, str]:
    """The honest baseline must verify: a check that cries wolf would hide real findings."""
    from promptctl.audit import audit_verify

    result = audit_verify()
    if result.ok:
        return "clean", result.message
    return "FALSE ALARM", result.message


# --- the record -------------------------------------------------------------------------


def audit_truncate(context: Context) -> tuple[str, str]:
    context.owner_sql(["DELETE FROM promptctl_auditevent", "DELETE FROM promptctl_auditchainhead"])
    return verify_outcome()


def audit_delete_tail(context: Context) -> tuple[str, str]:
    (last,) = context.rows("SELECT max(sequence) FROM promptctl_auditevent")[0]
    keep = last - 5
    context.owner_sql(
        [
            f"DELETE FROM promptctl_auditevent WHERE sequence > {keep}",
            "UPDATE promptctl_auditchainhead SET sequence = (SELECT sequence FROM promptctl_auditevent "
            f"WHERE sequence = {keep}), hash = (SELECT hash FROM promptctl_auditevent WHERE sequence = {keep})",
        ]
    )
    return verify_outcome()


def audit_rewrite(context: Context) -> tuple[str, str]:
    """Make carol, not bob, the one who approved v2, then re-link and re-hash every later event and the head.

    The attacker has the code and the database, not the key: they re-seal with
    the formula anyone can compute (plain SHA-256, as events were sealed before
    the keyed chain).
    """
    from promptctl.audit.macs import legacy_event_hash
    from promptctl.models import AuditEvent

    target = AuditEvent.objects.filter(actor_username="bob", verb__contains="approve").order_by("sequence").first()
    events = list(AuditEvent.objects.filter(sequence__gte=target.sequence).order_by("sequence"))
    previous = AuditEvent.objects.get(sequence=target.sequence - 1).hash
    statements: list[str | tuple[str, list]] = []
    for event in events:
        if event.pk == target.pk:
            event.actor_username = "carol"
            event.actor_id = context.user("carol").pk
        event.previous_hash = previous
        event.key_id = ""
        event.hash = legacy_event_hash(event)
        previous = event.hash
        statements.append(
            (
                "UPDATE promptctl_auditevent SET actor_username = %s, actor_id = %s, previous_hash = %s, "
                "key_id = %s, hash = %s WHERE id = %s",
                [event.actor_username, event.actor_id, event.previous_hash, event.key_id, event.hash, event.pk],
            )
        )
    statements.append(("UPDATE promptctl_auditchainhead SET sequence = %s, hash = %s", [events[-1].sequence, previous]))
    context.owner_sql(statements)
    return verify_outcome()


# --- the gate's own records ---------------------------------------------------------------


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
    import psycopg

    from promptctl.services.database_roles import runtime_role_apply

    role = "promptctl_redteam_app"
    runtime_role_apply(role=role)
    settings_dict = connection.settings_dict
    login = psycopg.connect(
        host=settings_dict["HOST"] or "127.0.0.1",
        port=settings_dict["PORT"] or 5432,
        dbname=settings_dict["NAME"],
        user=role,
        autocommit=True,
    )
    refusals = []
    try:
        for statement in (
            "TRUNCATE promptctl_approval",
            "DELETE FROM promptctl_auditevent",
            "UPDATE promptctl_agentversion SET system_prompt = 'rewritten'",
            "DROP TRIGGER IF EXISTS promptctl_approval_immutable ON promptctl_approval",
        ):
            try:
                login.execute(statement)
            except psycopg.Error as error:
                refusals.append(f"{statement.split()[0]}: {str(error).splitlines()[0]}")
            else:
                return NOT_CAUGHT, f"the runtime role ran: {statement}"
    finally:
        login.close()
    return "refused", "; ".join(refusals)


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


# --- what production serves, and how a change is judged -------------------------------------------


def _v2(context: Context) -> Any:
    """The tutorial's regressed version: the newest one."""
    return context.agent().versions.order_by("-number").first()


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


# --- the same, in the database: raw SQL as the owner, no event written ----------------------------


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


# --- bad input ---------------------------------------------------------------------------------


def cli_refused(*args: str) -> tuple[str, str]:
    """Run ``promptctl ARGS`` in-process, as a person at a shell would; exit code 1 with one line is a refusal."""
    import io

    from django.core.management import call_command

    errors = io.StringIO()
    try:
        call_command("promptctl", *args, stdout=io.StringIO(), stderr=errors)
    except SystemExit as exit_:
        lines = errors.getvalue().strip().splitlines()
        if exit_.code == 1 and len(lines) == 1:
            return "refused", f"promptctl: {lines[0].removeprefix('error: ')}"
        return NOT_CAUGHT, f"exit {exit_.code} with {len(lines)} lines: {errors.getvalue()[:200]}"
    return NOT_CAUGHT, "the command succeeded"


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
    import time

    started = time.monotonic()
    outcome, how = cli_refused(
        "testset", "import", "/dev/zero", "--name", "zeros", "--format", "jsonl", "--as", "admin"
    )
    return outcome, f"{how} (after {time.monotonic() - started:.1f}s)"


ATTACKS: list[Attack] = [
    Attack("(control: no attack)", control),
    Attack("truncate the audit log", audit_truncate),
    Attack("delete the tail, rewind the head", audit_delete_tail),
    Attack("rewrite history, re-hash the rest", audit_rewrite),
    Attack("delete approvals", approval_delete),
    Attack("delete an approved request, re-insert it", change_reinsert),
    Attack("runtime role wipes the record", runtime_role_rewrites, backends=("postgres",)),
    Attack("sock-puppet reviewer", sock_puppet_reviewer),
    Attack("99 % canary of the regressed v2", canary_99),
    Attack("switch the default agent", default_agent_switch),
    Attack("swap the gating set after approval", gating_set_swap),
    Attack("SQL: move the pin to v2", sql_pin_move),
    Attack("SQL: switch the default agent", sql_default_switch),
    Attack("SQL: make alice a superuser", sql_superuser),
    Attack("SQL: lift the canary evidence threshold", sql_policy_lowered),
    Attack("SQL: drop the gating set", sql_gating_set_dropped),
    Attack("NUL byte in a system prompt", nul_prompt),
    Attack("testset import /dev/zero", dev_zero_import),
]
