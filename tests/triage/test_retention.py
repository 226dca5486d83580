"""Retention: old ticket text is emptied and old history pruned; every figure the evidence reads stays the same.

Real traffic through the API (the SDK against the emulator), a shadow
candidate, a canary with its comparisons, a job, a correction; then the
purge with the policy at 0 days, through the operator command.
"""

from __future__ import annotations

import io
import json
import time

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from evals.models import Comparison
from promptctl import selectors as change_selectors
from promptctl.models import AuditEvent, ChangeRequest
from tests.triage.support import V2, ticket
from triage import selectors, services
from triage.models import CanaryComparison, ShadowResult, TriageCorrection, TriageJob, TriageRequest
from triage.services import retention

TEXT = ("subject", "body", "reply", "request_key")


def purge_command(*args: str) -> dict:
    out = io.StringIO()
    call_command("promptctl", "retention", "purge", "--json", *args, stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue())


def figures(production, v2: int, canary_revision: int) -> dict:
    """Everything canary limits, the canary watch, shadow evidence, comparisons and corrections read."""
    kept = [f.attname for f in TriageRequest._meta.concrete_fields if f.name not in (*TEXT, "redacted_at")]
    version = production.agent.versions.get(number=v2)
    return {
        "log": list(TriageRequest.objects.order_by("pk").values_list(*kept)),
        "canary_stats": selectors.canary_stats(agent_id=production.agent.pk, pin_revision=canary_revision),
        "canary_watch": selectors.canary_watch(agent_id=production.agent.pk, pin_revision=canary_revision),
        "shadow_evidence": selectors.shadow_evidence(version=version),
        "shadow_results": list(ShadowResult.objects.order_by("pk").values()),
        "canary_comparisons": list(CanaryComparison.objects.order_by("pk").values()),
        "eval_comparisons": list(Comparison.objects.order_by("pk").values()),
        "corrections": list(TriageCorrection.objects.order_by("pk").values("request_id", "team", "priority")),
        "jobs": list(TriageJob.objects.order_by("pk").values_list("pk", "status", "request_id", "attempts")),
    }


@pytest.fixture
def traffic(api, production, people, eager_tasks, django_capture_on_commit_callbacks):
    """Shadow traffic for v2, then a 50% canary of v2 (its calls compared with production), a job, a correction."""
    v2 = production.new_version(V2)
    production.policy.shadow_version = production.agent.versions.get(number=v2)
    production.policy.shadow_percent = 100
    services.routing_policy_save(policy=production.policy, actor=people.admin)
    with django_capture_on_commit_callbacks(execute=True):
        for index in range(6):
            assert api.post("/triage", ticket(index, request_key=f"customer-{index}@example.com")).status_code == 200
    production.policy.shadow_version = None
    production.policy.shadow_percent = 0
    services.routing_policy_save(policy=production.policy, actor=people.admin)
    production.canary(v2, 50)
    canary_revision = production.agent.pins.get(channel="production").revision
    with django_capture_on_commit_callbacks(execute=True):
        for index in range(6, 14):
            assert api.post("/triage", ticket(index, request_key=f"c-{index}")).status_code == 200
        job_id = api.post("/triage/jobs", ticket(3, request_key="order-88")).json()["job_id"]
    assert TriageJob.objects.get(pk=job_id).status == TriageJob.Status.DONE
    first = TriageRequest.objects.order_by("pk").first()
    services.triage_correct(request=first, team="billing", priority="P2", actor=people.reviewer)
    assert ShadowResult.objects.exists() and CanaryComparison.objects.exists()
    return v2, canary_revision


@pytest.mark.slow
def test_purge_at_zero_days_removes_ticket_text_keeps_every_figure_and_audits_once(
    traffic, production, settings, django_assert_max_num_queries
):
    v2, canary_revision = traffic
    settings.PROMPTCTL_RETENTION_TICKET_TEXT_DAYS = 0
    settings.PROMPTCTL_RETENTION_HISTORY_DAYS = 0
    before = figures(production, v2, canary_revision)
    requests = TriageRequest.objects.count()
    job_history = TriageJob.history.count()
    audit_events = AuditEvent.objects.count()
    assert TriageJob.history.exclude(subject="").exists()
    assert any(
        ChangeRequest.history.filter(id=pk).count() > 1 for pk in ChangeRequest.objects.values_list("pk", flat=True)
    )

    dry = purge_command("--dry-run")
    assert dry["dry_run"] is True and dry["requests_redacted"] == requests and dry["jobs_redacted"] == 1
    assert dry["job_history_redacted"] == job_history and dry["history_deleted_total"] > 0
    assert AuditEvent.objects.count() == audit_events, "a dry run writes nothing"
    assert not TriageRequest.objects.filter(subject="").exists() and TriageJob.history.exclude(subject="").exists()

    done = purge_command()
    assert {k: done[k] for k in ("requests_redacted", "jobs_redacted", "history_deleted")} == {
        k: dry[k] for k in ("requests_redacted", "jobs_redacted", "history_deleted")
    }
    assert not TriageRequest.objects.exclude(**{f: "" for f in TEXT}).exists()
    assert not TriageRequest.objects.filter(redacted_at__isnull=True).exists()
    job = TriageJob.objects.get()
    assert (job.subject, job.body, job.request_key) == ("", "", "") and job.redacted_at is not None
    assert not TriageJob.history.exclude(subject="", body="", request_key="").exists()
    # History: each object keeps exactly its latest row (the job's is its redaction).
    for model in (ChangeRequest, TriageJob):
        for pk in model.objects.values_list("pk", flat=True):
            assert model.history.filter(id=pk).count() == 1
    assert figures(production, v2, canary_revision) == before

    events = list(AuditEvent.objects.filter(sequence__gt=audit_events).order_by("sequence"))
    assert [e.verb for e in events] == ["retention.purge"]
    assert events[0].after["requests_redacted"] == requests and events[0].after["ticket_text_days"] == 0
    assert change_selectors.audit_chain_verify().ok

    again = purge_command()
    assert again["requests_redacted"] == 0 and again["history_deleted_total"] == 0
    assert AuditEvent.objects.count() == audit_events + 1, "a purge with nothing due writes no event"
    # The request log still refuses every other change (the redacted row too).
    first = TriageRequest.objects.order_by("pk").first()
    for statement in (
        "UPDATE triage_triagerequest SET team = 'auth' WHERE id = %s",
        "UPDATE triage_triagerequest SET subject = '', redacted_at = NULL WHERE id = %s",
        "DELETE FROM triage_triagerequest WHERE id = %s",
    ):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, [first.pk])


def test_a_job_not_yet_finished_keeps_its_text_in_its_row_and_its_history(api, production, settings):
    """Only finished jobs are redacted: a queued or running one still needs its ticket, history copies included."""
    job_id = api.post("/triage/jobs", ticket(4, request_key="still-queued")).json()["job_id"]
    job = TriageJob.objects.get(pk=job_id)
    assert job.status == TriageJob.Status.QUEUED and TriageJob.history.filter(id=job_id).exclude(subject="").exists()
    settings.PROMPTCTL_RETENTION_TICKET_TEXT_DAYS = 0

    done = purge_command()

    assert done["jobs_redacted"] == 0 and done["job_history_redacted"] == 0
    job.refresh_from_db()
    assert job.subject and job.request_key == "still-queued" and job.redacted_at is None
    assert not TriageJob.history.filter(id=job_id, subject="").exists()


@pytest.mark.django_db
def test_the_log_guard_allows_the_redaction_and_nothing_else(production_free_request):
    row = production_free_request
    attempts = {
        "an edit of a figure": "UPDATE triage_triagerequest SET latency_ms = latency_ms + 1 WHERE id = %s",
        "a redaction that also moves a label": (
            "UPDATE triage_triagerequest SET subject = '', body = '', reply = '', request_key = '', "
            "redacted_at = CURRENT_TIMESTAMP, team = 'auth' WHERE id = %s"
        ),
        "text emptied without the stamp": (
            "UPDATE triage_triagerequest SET subject = '', body = '', reply = '', request_key = '' WHERE id = %s"
        ),
        "a stamp that leaves text": "UPDATE triage_triagerequest SET redacted_at = CURRENT_TIMESTAMP WHERE id = %s",
        "a delete": "DELETE FROM triage_triagerequest WHERE id = %s",
    }
    for what, statement in attempts.items():
        with pytest.raises(DatabaseError, match="immutable"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, [row.pk])
        assert TriageRequest.objects.get(pk=row.pk).subject == "Invoice doubled", what
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE triage_triagerequest SET subject = '', body = '', reply = '', request_key = '', "
            "redacted_at = CURRENT_TIMESTAMP WHERE id = %s",
            [row.pk],
        )
    redacted = TriageRequest.objects.get(pk=row.pk)
    assert redacted.subject == "" and redacted.redacted_at is not None and redacted.team == "billing"
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE triage_triagerequest SET redacted_at = CURRENT_TIMESTAMP WHERE id = %s", [row.pk])


def test_a_person_who_is_not_a_superuser_may_not_purge(people):
    with pytest.raises(Exception, match="superuser"):
        retention.retention_purge(actor=people.requester)
    assert retention.retention_purge(actor=people.requester, dry_run=True).dry_run


@pytest.mark.slow
def test_the_scheduled_task_purges_in_a_real_worker_under_the_workers_policy(workers, production_free_request):
    from django.conf import settings

    from triage.tasks import retention_purge

    assert settings.CELERY_BEAT_SCHEDULE["retention-purge"]["task"] == retention_purge.name
    workers.start(concurrency=1, PROMPTCTL_RETENTION_TICKET_TEXT_DAYS="0")
    workers.wait_ready()
    retention_purge.delay()
    deadline = time.monotonic() + 60
    while not AuditEvent.objects.filter(verb="retention.purge").exists():
        assert time.monotonic() < deadline, "the worker did not purge within 60 s"
        time.sleep(0.2)
    event = AuditEvent.objects.get(verb="retention.purge")
    assert event.actor is None and event.after["requests_redacted"] == 1 and event.after["ticket_text_days"] == 0
    row = TriageRequest.objects.get(pk=production_free_request.pk)
    assert row.subject == row.body == row.request_key == "" and row.team == "billing"
    assert change_selectors.audit_chain_verify().ok


@pytest.fixture
def production_free_request(emulator, people):
    """One logged request, written as the serving service writes it (no session needed for a guard test)."""
    from django.utils import timezone

    from promptctl import services as change_services

    agent = change_services.agent_create(
        name="guarded", model="claude-sonnet-4-6", system_prompt="v1", actor=people.requester
    )
    version = agent.versions.get()
    return TriageRequest.objects.create(
        agent=agent,
        channel="production",
        version=version,
        pin_revision=1,
        canary=False,
        source=TriageRequest.Source.API,
        request_key="customer@example.com",
        subject="Invoice doubled",
        body="We were charged twice.",
        outcome="ok",
        team="billing",
        priority="P2",
        reply='{"team": "billing", "priority": "P2"}',
        latency_ms=120,
        received_at=timezone.now(),
    )


def _refusal(login, statement: str) -> str:
    """The first line of PostgreSQL's refusal of ``statement`` for ``login`` ("" when it was allowed)."""
    import psycopg

    try:
        login.execute(statement)
    except psycopg.Error as error:
        return str(error).splitlines()[0]
    return ""


@pytest.mark.postgres
@pytest.mark.slow
def test_the_runtime_role_purges_only_within_the_floor_the_owner_set(
    runtime_role, traffic, production, api, settings, runtime_login
):
    """The hourly purge runs as the app's login; the database bounds it by the policy the owner granted under."""
    from promptctl.services.database_roles import runtime_role_check
    from tests.db_roles_support import connected_as

    assert runtime_role_check(role=runtime_role).problems == []  # the floor is the settings' 30 / 90 days
    requests = TriageRequest.objects.count()
    settings.PROMPTCTL_RETENTION_TICKET_TEXT_DAYS = 0
    settings.PROMPTCTL_RETENTION_HISTORY_DAYS = 0
    assert "the retention floor is 30 and 90 days" in " ".join(runtime_role_check(role=runtime_role).problems)

    # As the app's login, a policy below the owner's floor is refused by the database, and nothing changes.
    with connected_as(runtime_role):
        err = io.StringIO()
        with pytest.raises(SystemExit) as exit_:
            call_command("promptctl", "retention", "purge", stdout=io.StringIO(), stderr=err)
    assert exit_.value.code == 1 and "younger than 30 days is kept" in err.getvalue()
    assert "promptctl db roles" in err.getvalue()
    assert not TriageRequest.objects.filter(subject="").exists()
    assert not AuditEvent.objects.filter(verb="retention.purge").exists()

    # The owner lowers the floor to the new policy; the app's login then purges.
    granted = io.StringIO()
    call_command("promptctl", "db", "roles", "--runtime-role", runtime_role, stdout=granted)
    assert "Retention floor: ticket text kept 0 days, history 0 days" in granted.getvalue()
    assert "SELECT, INSERT; UPDATE (subject, body, reply, request_key, redacted_at)" in granted.getvalue()
    assert runtime_role_check(role=runtime_role).problems == []
    with connected_as(runtime_role):
        done = purge_command()
        assert done["requests_redacted"] == requests and done["jobs_redacted"] == 1
        assert done["history_deleted_total"] > 0
    assert not TriageRequest.objects.exclude(subject="").exists()
    assert AuditEvent.objects.filter(verb="retention.purge").count() == 1
    assert change_selectors.audit_chain_verify().ok

    # What the app's login still cannot do, floor or not.
    job_history = TriageJob.history.order_by("history_id").first().history_id
    refusals = {
        "a figure of the log": _refusal(runtime_login, "UPDATE triage_triagerequest SET team = 'auth'"),
        "text written into a job's history": _refusal(
            runtime_login,
            f"UPDATE triage_historicaltriagejob SET subject = 'rewritten', redacted_at = NULL "
            f"WHERE history_id = {job_history}",
        ),
        "an object's latest history row": _refusal(runtime_login, "DELETE FROM promptctl_historicalchangerequest"),
        "the floor": _refusal(runtime_login, "UPDATE promptctl_retentionfloor SET history_days = 0"),
        "the floor's row": _refusal(runtime_login, "DELETE FROM promptctl_retentionfloor"),
    }
    assert refusals["a figure of the log"].startswith("permission denied")
    assert "only retention changes triage_historicaltriagejob" in refusals["text written into a job's history"]
    assert "latest history row is kept" in refusals["an object's latest history row"]
    assert refusals["the floor"].startswith("permission denied") and refusals["the floor's row"].startswith(
        "permission denied"
    )

    # The stamp says when the text went: a made-up time is refused, the time of the redaction allowed.
    assert api.post("/triage", ticket(19, request_key="stamp@example.com")).status_code == 200
    stamped = TriageRequest.objects.get(request_key="stamp@example.com")
    redaction = "UPDATE triage_triagerequest SET subject = '', body = '', reply = '', request_key = '', "
    assert "stamped with the time of the redaction" in _refusal(
        runtime_login, redaction + f"redacted_at = '2999-01-01' WHERE id = {stamped.pk}"
    )
    assert "stamped with the time of the redaction" in _refusal(
        runtime_login, redaction + f"redacted_at = now() - interval '1 hour' WHERE id = {stamped.pk}"
    )
    assert _refusal(runtime_login, redaction + f"redacted_at = now() WHERE id = {stamped.pk}") == ""

    # Back to 30 / 90 days: a fresh request's text and fresh history are out of the login's reach.
    settings.PROMPTCTL_RETENTION_TICKET_TEXT_DAYS = 30
    settings.PROMPTCTL_RETENTION_HISTORY_DAYS = 90
    call_command("promptctl", "db", "roles", "--runtime-role", runtime_role, stdout=io.StringIO())
    assert api.post("/triage", ticket(20, request_key="fresh@example.com")).status_code == 200
    fresh = TriageRequest.objects.get(request_key="fresh@example.com")
    early = _refusal(
        runtime_login,
        "UPDATE triage_triagerequest SET subject = '', body = '', reply = '', request_key = '', "
        f"redacted_at = now() WHERE id = {fresh.pk}",
    )
    assert "ticket text younger than 30 days is kept" in early
    assert "history younger than 90 days is kept" in _refusal(
        runtime_login, "DELETE FROM promptctl_historicalchangerequest"
    )
    assert TriageRequest.objects.get(pk=fresh.pk).subject != ""
