"""Seeding for ``bench.scale``: a world made through the services, then grown to size by copying its rows.

The issue measured rows made through the services; 10⁵ of them that way take hours. So the
small world is made through the services (``bench.api._bench_setup``: an agent, eval runs, a
comparison, change requests applied through the gate, an API key; a test set imported through
``testset_import``), and each table is then grown with ``bulk_create`` copies of those rows (new
keys, spread timestamps, history rows where the model keeps history). Audit events are the one
exception: they are appended by ``audit_events_append``, which links and MACs each event exactly
as ``promptctl.audit.chain.audit_record`` does, under the same head-row lock, so ``audit verify``
still passes over the seeded chain.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

from django.db import transaction
from django.utils import timezone
from simple_history.utils import bulk_create_with_history

BATCH = 2_000


def _copies(template, count: int, change) -> list:
    """``count`` unsaved copies of ``template`` (no primary key), each passed through ``change(index, row)``."""
    rows = []
    for index in range(count):
        row = copy.copy(template)
        row.pk = None
        row.id = None
        row._state = copy.copy(template._state)
        row._state.adding = True
        change(index, row)
        rows.append(row)
    return rows


def _store(model, rows: list) -> None:
    if hasattr(model, "history"):
        bulk_create_with_history(rows, model, batch_size=BATCH, default_date=timezone.now())
    else:
        model.objects.bulk_create(rows, batch_size=BATCH)


def _spread(index: int, count: int, *, days: int = 60) -> dt.datetime:
    """The ``index``-th of ``count`` moments spread over the last ``days`` days, oldest first."""
    return timezone.now() - dt.timedelta(days=days) + dt.timedelta(seconds=days * 86_400 * index / max(count, 1))


def versions_grow(*, agent, count: int, creator) -> None:
    from promptctl.models import AgentVersion

    template = agent.versions.order_by("-number").first()
    top = template.number

    def change(index: int, row) -> None:
        row.number = top + 1 + index
        row.created_at = _spread(index, count)
        row.origin = AgentVersion.Origin.OUTSIDE if index % 50 == 0 else AgentVersion.Origin.PROMPTCTL
        row.created_by = None if index % 50 == 0 else creator

    _store(AgentVersion, _copies(template, count, change))


def changes_grow(*, agent, count: int, reviewer) -> None:
    """Copies of the world's first promotion with its approval, closed as the guards allow.

    The database guards (migration 0002) take a request only as ``pending`` and move it only along
    the allowed transitions, so the copies are filed pending with one approval each, then moved in
    bulk: half approved and then superseded, half withdrawn (plain updates: no history rows for the moves).
    """
    from django.db.models import F

    from promptctl.models import Approval, ChangeRequest

    template = ChangeRequest.objects.filter(agent=agent, kind="promote", status="applied").order_by("pk").first()
    approval = Approval.objects.filter(change=template).first()

    def change(index: int, row) -> None:
        row.requested_at = _spread(index, count)
        row.status = ChangeRequest.Status.PENDING
        row.status_reason = ""
        row.approved_at = None
        row.closed_at = None
        row.closed_by = None
        row.reason = f"scale seed {index:07d}: promote after review"

    _store(ChangeRequest, _copies(template, count, change))
    seeded = ChangeRequest.objects.filter(agent=agent, reason__startswith="scale seed ")
    changes = list(seeded.order_by("pk").only("pk", "requested_at"))

    def approve(index: int, row) -> None:
        row.change = changes[index]
        row.change_id = changes[index].pk
        row.created_at = changes[index].requested_at + dt.timedelta(minutes=5)

    _store(Approval, _copies(approval, len(changes), approve))
    odd = [change.pk for change in changes[1::2]]
    even = [change.pk for change in changes[0::2]]
    for start in range(0, max(len(odd), len(even)), BATCH):
        ChangeRequest.objects.filter(pk__in=odd[start : start + BATCH]).update(
            status=ChangeRequest.Status.WITHDRAWN,
            status_reason="withdrawn by the requester",
            closed_at=F("requested_at") + dt.timedelta(minutes=10),
            closed_by=template.requested_by,
        )
        batch = ChangeRequest.objects.filter(pk__in=even[start : start + BATCH])
        batch.update(status=ChangeRequest.Status.APPROVED, approved_at=F("requested_at") + dt.timedelta(minutes=5))
        batch.update(
            status=ChangeRequest.Status.SUPERSEDED,
            status_reason="the pin moved before it was applied",
            closed_at=F("requested_at") + dt.timedelta(minutes=10),
        )


def audit_events_append(*, count: int, agent_id: int, actor) -> None:
    """``count`` events appended to the chain as ``audit_record`` appends one: linked, MACed, head row locked."""
    from promptctl.audit.chain import _chain_head_locked
    from promptctl.audit.keys import audit_key_ring
    from promptctl.audit.macs import event_mac, json_normalize
    from promptctl.models import AuditEvent

    key = audit_key_ring().current
    done = 0
    while done < count:
        with transaction.atomic():
            head = _chain_head_locked()
            sequence, previous = head.sequence, head.hash
            rows = []
            for index in range(done, min(count, done + BATCH)):
                sequence += 1
                # no pin.move: each real one publishes a checkpoint, which a seeded one would lack
                verb = ("changerequest.create", "changerequest.approve", "version.create", "changerequest.withdraw")[
                    index % 4
                ]
                event = AuditEvent(
                    sequence=sequence,
                    occurred_at=_spread(index, count),
                    actor=actor,
                    actor_username=actor.username,
                    verb=verb,
                    object_type="bench.seed",  # not a live object: the record checks compare live rows with their events
                    object_id=str(index + 1),
                    object_repr=f"#{index + 1} promote production",
                    agent_id_ref=agent_id,
                    before=json_normalize({"status": "pending"}),
                    after=json_normalize({"status": "approved", "seed": index}),
                    request_id=f"scale-{index:08d}",
                    previous_hash=previous,
                    key_id=key.key_id,
                    token_ref="",
                )
                event.hash = event_mac(event, key)
                previous = event.hash
                rows.append(event)
            AuditEvent.objects.bulk_create(rows)
            head.sequence, head.hash = sequence, previous
            head.save(update_fields=["sequence", "hash"])
        done += len(rows)


def testset_import_big(*, name: str, tickets: list[dict], cases: int, actor, agent) -> Any:
    """A test set of ``cases`` tickets imported through ``testset_import`` (the tutorial's, renumbered)."""
    from evals import services as eval_services

    lines = []
    for index in range(cases):
        ticket = dict(tickets[index % len(tickets)])
        ticket["id"] = f"{ticket.get('id', 'T')}-{index:05d}"
        ticket["subject"] = f"{ticket['subject']} ({index})"
        lines.append(json.dumps(ticket))
    return eval_services.testset_import(
        name=name, data="\n".join(lines), filename=f"{name}.jsonl", agent=agent, actor=actor
    ).version


def eval_runs_grow(*, agent, testset_version, results: int, min_runs: int = 1) -> None:
    """Finished runs of the big test set, copied from a finished run and its results.

    200 results a run (fewer when the set is smaller), and at least ``min_runs`` runs: when ``results``
    cannot give each of them that many, each gets ``results // min_runs`` (at least one).
    """
    from evals.models import EvalResult, EvalRun

    template = EvalRun.objects.filter(agent_version__agent=agent, status="finished").order_by("pk").first()
    result_template = EvalResult.objects.filter(run=template).order_by("pk").first()
    per_run = min(200, testset_version.cases.count())
    runs = max(min_runs, results // per_run)
    per_run = min(per_run, max(1, results // runs))
    cases = list(testset_version.cases.order_by("position")[:per_run])

    def run_change(index: int, row) -> None:
        row.testset_version = testset_version
        row.created_at = _spread(index, runs)
        row.started_at = row.created_at
        row.finished_at = row.created_at + dt.timedelta(minutes=3)
        row.scores = copy.deepcopy(template.scores)

    _store(EvalRun, _copies(template, runs, run_change))
    new_runs = list(EvalRun.objects.filter(testset_version=testset_version).order_by("pk"))
    pending: list = []
    for run in new_runs:

        def result_change(index: int, row, run=run) -> None:
            row.run = run
            row.run_id = run.pk
            row.case = cases[index]
            row.case_id = cases[index].pk
            row.attempt = 1
            row.created_at = run.finished_at

        pending.extend(_copies(result_template, len(cases), result_change))
        if len(pending) >= BATCH * 5:
            EvalResult.objects.bulk_create(pending, batch_size=BATCH)
            pending = []
    EvalResult.objects.bulk_create(pending, batch_size=BATCH)


def triage_requests_add(*, agent, count: int, tickets: list[dict], canary: bool = False, pin_revision=None) -> None:
    """Logged triage calls (``received_at`` spread); one in ten invalid; ticket text from the tutorial's tickets."""
    from promptctl.models import PRODUCTION, Pin
    from triage.models import TriageRequest

    pin = Pin.objects.select_related("version").get(agent=agent, channel=PRODUCTION)
    revision = pin_revision if pin_revision is not None else pin.revision
    rows = []
    for index in range(count):
        ticket = tickets[index % len(tickets)]
        received = _spread(index, count, days=30)
        invalid = index % 10 == 0
        rows.append(
            TriageRequest(
                agent=agent,
                channel=PRODUCTION,
                version=pin.version,
                pin_revision=revision,
                canary=canary,
                source=TriageRequest.Source.API,
                request_key=f"{'canary' if canary else 'ticket'}-{index:08d}",
                subject=ticket["subject"],
                body=ticket["body"],
                outcome="invalid" if invalid else "ok",
                team="" if invalid else ticket["team"],
                priority="" if invalid else ticket["priority"],
                problem="not JSON" if invalid else "",
                reply=json.dumps({"team": ticket["team"], "priority": ticket["priority"]}),
                session_id=f"sesn_{index:012d}",
                latency_ms=900 + index % 400,
                received_at=received,
                recorded_at=received + dt.timedelta(seconds=1),
            )
        )
        if len(rows) >= BATCH:
            TriageRequest.objects.bulk_create(rows)
            rows = []
    TriageRequest.objects.bulk_create(rows)
    if canary:
        _canary_counter_settle(agent_id=agent.pk, pin_revision=revision)


def _canary_counter_settle(*, agent_id: int, pin_revision: int) -> None:
    """Set the revision's ``CanaryCounter`` to a full count of its log rows, as the serving path keeps it.

    The copies are bulk-inserted without ``triage_record``, so the counter (and the record check
    ``canary_counters_match_the_log``) would otherwise read zero.
    """
    from triage import selectors
    from triage.models import CanaryCounter

    counted = selectors.canary_stats_counted(agent_id=agent_id, pin_revision=pin_revision)
    CanaryCounter.objects.update_or_create(
        agent_id=agent_id,
        pin_revision=pin_revision,
        defaults={"requests": counted.requests, "invalid": counted.invalid, "errors": counted.errors},
    )
