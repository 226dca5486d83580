"""The PostgreSQL runtime role (``promptctl db roles``): refused what would rewrite the record, and enough to run the app."""

from __future__ import annotations

import io

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from promptctl import services
from promptctl.models import Approval, AuditEvent, ChangeRequest, Pin
from promptctl.services.database_roles import APPEND, NO_DELETE, PRUNABLE, runtime_grants, runtime_role_check
from tests.change_control_support import CHANNEL, PASSWORD, V1, V2, promote

# Every table the issue names as part of the record; runtime_grants must keep each of them append-only.
RECORD_TABLES = {
    "promptctl_auditevent",
    "promptctl_auditsegment",  # sealed by an insert; marking it archived is the owner's (with the delete)
    "promptctl_approval",
    "promptctl_agentversion",
    "evals_testsetversion",
    "evals_testcase",
    "evals_evalresult",
    "evals_comparison",
    "triage_triagerequest",
    "triage_canarycheck",
    "triage_shadowresult",
}

# Updated only as the triggers allow, never deleted.
KEPT_TABLES = {"promptctl_changerequest", "promptctl_pin", "promptctl_auditchainhead"}


def _refusal(login: psycopg.Connection, statement: str) -> str | None:
    """The error PostgreSQL gave the runtime role for ``statement``, or None when it was allowed."""
    try:
        login.execute(statement)
    except psycopg.Error as error:
        return str(error).splitlines()[0]
    return None


def _first_column(table: str) -> str:
    with connection.cursor() as cursor:
        return connection.introspection.get_table_description(cursor, table)[0].name


def test_the_plan_keeps_the_record_append_only():
    grants = {grant.table: grant.privileges for grant in runtime_grants()}
    assert {table: grants[table] for table in RECORD_TABLES} == {table: APPEND for table in RECORD_TABLES}
    assert grants["promptctl_changerequest"] == grants["promptctl_pin"] == NO_DELETE
    # History is appended and only pruned (the database guards bound the pruning: the retention tests).
    assert all(privileges == PRUNABLE for table, privileges in grants.items() if "_historical" in table)
    # Retention's one UPDATE: the log's text columns and stamp, nothing else of the record.
    updatable = {grant.table: set(grant.update_columns) for grant in runtime_grants() if grant.update_columns}
    assert updatable == {
        "triage_triagerequest": {"subject", "body", "reply", "request_key", "redacted_at"},
        "triage_historicaltriagejob": {"subject", "body", "request_key", "redacted_at"},
    }
    assert not any("TRUNCATE" in privileges for privileges in grants.values())


def test_the_sql_script_for_a_dba_grants_the_same(db):
    out = io.StringIO()
    call_command("promptctl", "db", "roles", "--runtime-role", "promptctl_app", "--sql", stdout=out)
    script = out.getvalue()
    assert 'GRANT SELECT, INSERT ON TABLE "public"."promptctl_approval" TO "promptctl_app";' in script
    assert 'GRANT SELECT, INSERT, UPDATE ON TABLE "public"."promptctl_changerequest" TO "promptctl_app";' in script
    assert 'REVOKE ALL ON ALL TABLES IN SCHEMA "public" FROM "promptctl_app";' in script
    assert "TRUNCATE" not in script and "PASSWORD" not in script


def test_a_role_name_that_is_not_an_identifier_is_refused(db):
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("promptctl", "db", "roles", "--runtime-role", 'app"; DROP TABLE x; --', "--sql", stderr=err)
    assert exit_.value.code == 1 and "not a plain lower-case identifier" in err.getvalue()


def test_sqlite_has_no_roles_to_grant(db):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's refusal; PostgreSQL grants (the tests below)")
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("promptctl", "db", "roles", "--runtime-role", "promptctl_app", stderr=err)
    assert exit_.value.code == 1 and "Database roles are for PostgreSQL" in err.getvalue()


@pytest.mark.postgres
def test_the_runtime_role_is_refused_what_would_rewrite_the_record(
    runtime_role, runtime_login, agent, requester, reviewer
):
    applied = promote(agent, agent.latest_version_number, requester, reviewer)
    allowed = []
    grants = runtime_grants()
    for grant in grants:
        table = grant.table
        column = _first_column(table)
        statements = [f"TRUNCATE {table}"]
        if table in RECORD_TABLES | KEPT_TABLES or "DELETE" not in grant.privileges:
            statements.append(f"DELETE FROM {table}")
        if table in RECORD_TABLES or "UPDATE" not in grant.privileges:
            statements.append(f"UPDATE {table} SET {column} = {column}")
        for statement in statements:
            refusal = _refusal(runtime_login, statement)
            if refusal is None or "permission denied" not in refusal:
                allowed.append((statement, refusal))
    assert allowed == []
    assert len(grants) > 30 and AuditEvent.objects.count() > 5 and Approval.objects.filter(change=applied).exists()

    # Change requests and pins may be updated, but only as the triggers allow: a closed request never changes.
    assert "is closed" in _refusal(
        runtime_login, f"UPDATE promptctl_changerequest SET reason = 'rewritten' WHERE id = {applied.pk}"
    )
    assert ChangeRequest.objects.get(pk=applied.pk).reason != "rewritten"


@pytest.mark.postgres
def test_the_runtime_role_cannot_drop_or_disable_a_trigger(runtime_role, runtime_login):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " WHERE NOT t.tgisinternal AND c.relname LIKE %s",
            ["promptctl\\_%"],
        )
        triggers = cursor.fetchall()
    assert len(triggers) >= 6
    tables = sorted({table for table, _name in triggers})
    refusals = [_refusal(runtime_login, f"DROP TRIGGER {name} ON {table}") for table, name in triggers]
    refusals += [_refusal(runtime_login, f"ALTER TABLE {table} DISABLE TRIGGER USER") for table in tables]
    refusals += [_refusal(runtime_login, f"ALTER TABLE {table} OWNER TO {runtime_role}") for table in tables]
    refusals.append(_refusal(runtime_login, "DROP FUNCTION promptctl_refuse_row_change() CASCADE"))
    assert all(refusal and "must be owner" in refusal for refusal in refusals), refusals
    assert runtime_role_check(role=runtime_role).problems == []


@pytest.mark.postgres
def test_the_check_names_a_privilege_granted_behind_its_back(runtime_role):
    with connection.cursor() as cursor:
        cursor.execute(f'GRANT DELETE, TRUNCATE ON promptctl_approval TO "{runtime_role}"')
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("promptctl", "db", "roles", "--runtime-role", runtime_role, "--check", stdout=out, stderr=err)
    assert exit_.value.code == 1
    assert "promptctl_approval: holds DELETE, INSERT, SELECT, TRUNCATE, should hold SELECT, INSERT" in out.getvalue()
    # Running the command again puts it right (it revokes before it grants).
    call_command("promptctl", "db", "roles", "--runtime-role", runtime_role, stdout=io.StringIO())
    assert runtime_role_check(role=runtime_role).problems == []


@pytest.mark.postgres
def test_a_changed_retention_floor_is_audited_once(runtime_role, settings):
    """How soon any login may erase customer text is part of the record: set, changed, or left alone."""
    from promptctl.audit import audit_verify
    from promptctl.models import AuditEvent

    assert AuditEvent.objects.filter(verb="retention.floor").count() == 1  # the fixture's grant set it
    call_command("promptctl", "db", "roles", "--runtime-role", runtime_role, stdout=io.StringIO())
    assert AuditEvent.objects.filter(verb="retention.floor").count() == 1  # the same floor again: no event
    settings.PROMPTCTL_RETENTION_TICKET_TEXT_DAYS = 7
    call_command("promptctl", "db", "roles", "--runtime-role", runtime_role, stdout=io.StringIO())
    event = AuditEvent.objects.filter(verb="retention.floor").latest("sequence")
    assert event.before == {"ticket_text_days": 30, "history_days": 90}
    assert event.after == {"ticket_text_days": 7, "history_days": 90}
    assert audit_verify().ok


@pytest.mark.postgres
def test_the_check_names_a_guard_an_older_release_installed(runtime_role):
    """A guard function with another body (an older release's) is named until `db roles` replaces it."""
    from promptctl.services.database_roles import REDACTION_GUARD

    older = REDACTION_GUARD.replace("now() - interval '5 minutes'", "now() - interval '1 day'")
    assert older != REDACTION_GUARD
    with connection.cursor() as cursor:
        cursor.execute(older)
    problems = runtime_role_check(role=runtime_role).problems
    assert any("retention guards out of date (promptctl_redaction_guard)" in problem for problem in problems)
    call_command("promptctl", "db", "roles", "--runtime-role", runtime_role, stdout=io.StringIO())
    assert runtime_role_check(role=runtime_role).problems == []


@pytest.mark.postgres
def test_the_owner_itself_is_refused_as_the_runtime_role(db):
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        owner = cursor.fetchone()[0]
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("promptctl", "db", "roles", "--runtime-role", owner, stderr=err)
    assert exit_.value.code == 1 and "login running this command" in err.getvalue()


@pytest.mark.postgres
def test_the_app_runs_as_the_runtime_role(app_as_runtime_role, emulator):
    from evals import services as evals_services
    from evals.models import EvalResult
    from promptctl.audit import audit_verify
    from tests.evals.support import TICKETS

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, session_user")
        assert cursor.fetchone() == (app_as_runtime_role, app_as_runtime_role)

    requester = services.user_create(username="rita", role="requester", password=PASSWORD)
    reviewer = services.user_create(username="victor", role="reviewer", password=PASSWORD)
    admin = services.user_create(username="gina", role="admin", password=PASSWORD)
    agent = services.agent_create(name="ticket-triage", model="claude-sonnet-4-6", system_prompt=V1, actor=requester)
    v2 = services.version_create(agent=agent, system_prompt=V2, actor=requester)
    promote(agent, 1, requester, reviewer)
    applied = promote(agent, v2.number, requester, reviewer)

    imported = evals_services.testset_import(
        name="support-tickets", data=TICKETS.read_bytes(), filename=TICKETS.name, agent=agent, actor=admin
    )
    run = evals_services.eval_run_start(agent_version=v2, testset_version=imported.version, actor=admin)
    case = imported.version.cases.order_by("position").first()
    result = evals_services.eval_unit_execute(run_id=run.pk, case_id=case.pk, attempt=1)

    assert Pin.objects.get(agent=agent, channel=CHANNEL).version_id == v2.pk and applied.status == "applied"
    assert EvalResult.objects.filter(pk=result.pk, run=run).exists()
    assert audit_verify().ok
