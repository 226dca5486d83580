"""The keyed audit chain and its checkpoints against an insider who holds the database but not the key.

Each attack is played with raw SQL as the database's owner would (triggers
out of the way, ``tests/promptctl/audit_support.py``), and ``audit verify``
must name it: truncation, a deleted tail with the head rewound, a rewrite
without the key (own MACs, own key id, the old plain SHA-256), deletions in
the middle, a forged checkpoint line. Honest chains verify, also across a key
rotation and with a legacy (pre-key) prefix.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time

import pytest
from django.db import transaction

from promptctl import selectors
from promptctl.audit import (
    audit_checkpoint_publish,
    audit_key_ring,
    audit_record,
    audit_verify,
    event_mac,
    legacy_event_hash,
)
from promptctl.audit.keys import AuditKeyError
from promptctl.models import AuditChainHead, AuditEvent
from tests.deployment.support import manage, production_env
from tests.promptctl.audit_support import (
    as_owner,
    checkpoint_lines,
    cli,
    kinds,
    rewrite_from,
    seal_with_own_key,
    seal_with_own_key_id,
    seal_with_plain_sha,
    truncate_everything,
)


def _rename(event: AuditEvent) -> None:
    event.object_repr = "nothing to see here"


# --- publishing ----------------------------------------------------------------------------


def test_a_pin_move_publishes_a_checkpoint_line_and_a_log_line(
    agent, requester, reviewer, caplog, django_capture_on_commit_callbacks
):
    from tests.change_control_support import promote

    assert checkpoint_lines() == []
    with caplog.at_level(logging.INFO, logger="promptctl.audit.checkpoint"):
        with django_capture_on_commit_callbacks(execute=True):
            promote(agent, agent.latest_version_number, requester, reviewer)
    pin_move = AuditEvent.objects.get(verb="pin.move")
    lines = checkpoint_lines()
    assert len(lines) == 1
    checkpoint = lines[0]
    head = AuditEvent.objects.order_by("sequence").last()  # the request's closing event follows the move
    assert checkpoint["sequence"] == head.sequence >= pin_move.sequence and checkpoint["mac"] == head.hash
    assert checkpoint["reason"] == "pin.move" and checkpoint["key_id"] == audit_key_ring().current.key_id
    assert checkpoint["legacy_until"] == 0 and len(checkpoint["checkpoint_mac"]) == 64
    logged = [record.getMessage() for record in caplog.records if record.name == "promptctl.audit.checkpoint"]
    assert [json.loads(message) for message in logged] == lines
    result = audit_verify()
    assert result.ok and result.checkpoint is not None and result.uncovered == 0
    assert "covers every event" in result.message


def test_the_checkpoint_command_and_the_scheduled_task_publish(checkpointed_history):
    from promptctl import tasks

    code, out, _err = cli("audit", "checkpoint")
    assert code == 0 and f"#{checkpointed_history[-1].sequence}" in out
    tasks.audit_checkpoint()  # the same head, published a moment ago: a scheduled one is skipped
    assert [line["reason"] for line in checkpoint_lines()] == ["pin.move", "command"]
    from django.conf import settings

    assert settings.CELERY_BEAT_SCHEDULE["audit-checkpoint"]["task"] == "promptctl.audit_checkpoint"


def test_events_after_the_checkpoint_are_reported_as_covered_only_by_their_macs(checkpointed_history):
    with transaction.atomic():
        audit_record(actor=None, verb="test.note", object_type="test", object_id="1")
        audit_record(actor=None, verb="test.note", object_type="test", object_id="2")
    result = audit_verify()
    head = checkpointed_history[-1].sequence
    assert result.ok and result.uncovered == 2
    assert f"events #{head + 1} to #{head + 2} are covered only by their MACs" in result.message
    code, out, _err = cli("--json", "audit", "verify")
    data = json.loads(out)
    assert code == 0 and data["uncovered_events"] == 2 and data["checkpoint_age_seconds"] < 60


# --- attacks ----------------------------------------------------------------------------------


def test_truncating_the_table_and_deleting_the_head_is_named(checkpointed_history):
    truncate_everything()
    assert not AuditEvent.objects.exists() and not AuditChainHead.objects.exists()
    result = audit_verify()
    assert not result.ok and kinds(result) == {"truncated"}
    assert f"records #{checkpointed_history[-1].sequence}" in result.problem and "emptied" in result.problem
    code, out, err = cli("audit", "verify")
    assert code == 1 and "truncation" in err and len(err.strip().splitlines()) == 1
    code, out, _err = cli("--json", "audit", "verify")
    assert code == 1 and json.loads(out)["findings"][0]["kind"] == "truncated"


def test_deleting_the_tail_and_rewinding_the_head_is_named(checkpointed_history):
    keep = checkpointed_history[-4]
    as_owner(
        ("DELETE FROM promptctl_auditevent WHERE sequence > %s", [keep.sequence]),
        ("UPDATE promptctl_auditchainhead SET sequence = %s, hash = %s WHERE id = 1", [keep.sequence, keep.hash]),
    )
    result = audit_verify()
    assert not result.ok and kinds(result) == {"tail_deleted"}
    assert result.first_broken_sequence == keep.sequence + 1
    assert f"head rewound to #{keep.sequence}" in result.problem


def test_an_edit_resealed_with_the_attackers_own_mac_is_named(checkpointed_history):
    target = checkpointed_history[3]
    rewrite_from(target.sequence, edit=_rename, seal=seal_with_own_key)
    result = audit_verify()
    assert not result.ok and kinds(result) == {"edited", "rewritten"}
    edited = next(finding for finding in result.findings if finding.kind == "edited")
    assert (edited.sequence, edited.last_sequence) == (target.sequence, checkpointed_history[-1].sequence)
    assert result.first_broken_sequence == target.sequence


def test_an_edit_resealed_under_a_key_id_of_the_attackers_is_named(checkpointed_history):
    rewrite_from(checkpointed_history[2].sequence, edit=_rename, seal=seal_with_own_key_id)
    result = audit_verify()
    assert not result.ok and kinds(result) == {"unknown_key", "rewritten"}


def test_an_edit_resealed_with_the_old_plain_sha_is_named(checkpointed_history):
    """The attack that verified before the key: recompute every later SHA-256 and the head."""
    rewrite_from(checkpointed_history[4].sequence, edit=_rename, seal=seal_with_plain_sha)
    result = audit_verify()
    assert not result.ok and kinds(result) == {"unkeyed_rewrite", "rewritten"}
    assert "without the key" in result.problem


def test_a_whole_chain_rewritten_with_the_plain_sha_disagrees_with_the_checkpoint(checkpointed_history):
    rewrite_from(1, edit=_rename, seal=seal_with_plain_sha)
    result = audit_verify()
    assert not result.ok and {"unkeyed_rewrite", "rewritten"} <= kinds(result)


def test_an_edited_row_is_named_even_with_no_checkpoint_at_all(checkpointed_history, settings, tmp_path):
    settings.PROMPTCTL_AUDIT_CHECKPOINT_FILE = str(tmp_path / "elsewhere.jsonl")
    target = checkpointed_history[5]
    as_owner(("UPDATE promptctl_auditevent SET actor_username = %s WHERE id = %s", ["mallory", target.pk]))
    result = audit_verify()
    assert not result.ok and kinds(result) == {"edited"} and result.first_broken_sequence == target.sequence
    assert "No checkpoint" in result.coverage


def test_events_deleted_in_the_middle_are_named(checkpointed_history):
    first, last = checkpointed_history[2].sequence, checkpointed_history[4].sequence
    as_owner(("DELETE FROM promptctl_auditevent WHERE sequence BETWEEN %s AND %s", [first, last]))
    result = audit_verify()
    assert not result.ok and "deleted_middle" in kinds(result)
    assert f"events #{first} to #{last} are missing" in result.problem


def test_a_forged_checkpoint_line_is_named_and_does_not_hide_the_truncation(checkpointed_history):
    truncate_everything()
    genuine = checkpoint_lines()[0]
    forged = {**genuine, "sequence": 0, "mac": "0" * 64, "published_at": genuine["published_at"]}
    with open(os.environ["PROMPTCTL_AUDIT_CHECKPOINT_FILE"], "a") as handle:
        handle.write(json.dumps(forged) + "\n")
        handle.write("this is not a checkpoint\n")
    result = audit_verify()
    assert not result.ok and kinds(result) == {"checkpoint_forged", "truncated"}
    forged_findings = [finding for finding in result.findings if finding.kind == "checkpoint_forged"]
    assert len(forged_findings) == 2 and "its own MAC does not match" in forged_findings[0].detail


def test_no_checkpoint_is_published_over_a_broken_chain(checkpointed_history):
    rewrite_from(checkpointed_history[4].sequence, edit=_rename, seal=seal_with_plain_sha)
    before = checkpoint_lines()
    code, _out, err = cli("audit", "checkpoint")
    assert code == 1 and "No checkpoint published" in err and "rewritten" in err
    assert checkpoint_lines() == before


# --- honest chains ----------------------------------------------------------------------------


def _notes(count: int, start: int = 0) -> None:
    for number in range(start, start + count):
        with transaction.atomic():
            audit_record(actor=None, verb="test.note", object_type="test", object_id=str(number))


def test_an_honest_chain_verifies_after_many_events_and_a_key_rotation(checkpointed_history, settings):
    _notes(150)
    audit_checkpoint_publish(reason="command")
    old = audit_key_ring().current
    new_secret = secrets.token_urlsafe(48)
    settings.PROMPTCTL_AUDIT_KEY, settings.PROMPTCTL_AUDIT_KEY_FILE = new_secret, ""
    settings.PROMPTCTL_AUDIT_KEYS_OLD = [old.secret.decode()]
    new = audit_key_ring().current
    assert new.key_id != old.key_id
    _notes(50, start=150)
    audit_checkpoint_publish(reason="command")
    result = selectors.audit_chain_verify()
    assert result.ok, result.message
    assert result.checked == len(checkpointed_history) + 200 and result.checkpoints_checked == 3
    assert set(AuditEvent.objects.values_list("key_id", flat=True)) == {old.key_id, new.key_id}
    assert [line["key_id"] for line in checkpoint_lines()] == [old.key_id, old.key_id, new.key_id]

    settings.PROMPTCTL_AUDIT_KEYS_OLD = []  # the old key dropped too early: named, not silently trusted
    result = audit_verify()
    assert not result.ok and kinds(result) == {"unknown_key", "checkpoint_forged"}


def test_a_legacy_prefix_verifies_and_cannot_be_rewritten_after_the_upgrade(checkpointed_history, settings, tmp_path):
    """Events from before the key (plain SHA-256, key id "") verify as a prefix the first keyed MAC covers."""
    settings.PROMPTCTL_AUDIT_CHECKPOINT_FILE = str(tmp_path / "fresh.jsonl")
    legacy_end = checkpointed_history[3].sequence
    key = audit_key_ring().current

    def reseal_as_before_upgrade(event: AuditEvent) -> None:
        if event.sequence <= legacy_end:
            seal_with_plain_sha(event)
        else:
            event.hash = event_mac(event, key)

    rewrite_from(1, edit=lambda event: None, seal=reseal_as_before_upgrade)
    assert audit_verify().ok
    checkpoint = audit_checkpoint_publish(reason="command")
    assert checkpoint is not None and checkpoint.legacy_until == legacy_end

    # An attacker rewrites the legacy prefix with the old formula: the first keyed event no longer links.
    rewrite_from(2, edit=_rename, seal=seal_with_plain_sha, rewind_head=False)
    result = audit_verify()
    assert not result.ok and "unkeyed_rewrite" in kinds(result) and "rewritten" in kinds(result)
    assert legacy_event_hash(AuditEvent.objects.get(sequence=2)) == AuditEvent.objects.get(sequence=2).hash


# --- the key ----------------------------------------------------------------------------------


def test_a_development_key_file_is_made_once_with_mode_0600(settings, tmp_path):
    path = tmp_path / "state" / "audit.key"
    settings.PROMPTCTL_AUDIT_KEY, settings.PROMPTCTL_AUDIT_KEY_FILE = "", str(path)
    settings.PROMPTCTL_AUDIT_KEY_GENERATE = True
    first = audit_key_ring().current
    assert path.stat().st_mode & 0o777 == 0o600
    assert audit_key_ring().current == first and first.secret.decode() in path.read_text()
    settings.PROMPTCTL_AUDIT_KEY_GENERATE = False
    settings.PROMPTCTL_AUDIT_KEY_FILE = str(tmp_path / "missing.key")
    with pytest.raises(AuditKeyError, match="does not exist"):
        audit_key_ring()


def test_production_refuses_to_start_without_an_audit_key(tmp_path):
    result = manage("check", env=production_env(tmp_path, PROMPTCTL_AUDIT_KEY=None))
    assert result.returncode != 0
    assert result.stderr.startswith("promptctl: settings: PROMPTCTL_AUDIT_KEY is not set and DJANGO_DEBUG is false")
    assert not (tmp_path / "audit.key").exists()
    result = manage("check", env=production_env(tmp_path))
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_a_lone_worker_publishes_checkpoints_on_its_own_timer(transactional_db, emulator):
    from tests.evals.support import Workers

    with transaction.atomic():
        event = audit_record(actor=None, verb="test.note", object_type="test", object_id="1")
    pool = Workers(emulator_url=emulator.base_url)
    pool.purge()
    pool.start(concurrency=1, PROMPTCTL_AUDIT_CHECKPOINT_SECONDS="1")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not checkpoint_lines():
            time.sleep(0.2)
    finally:
        pool.stop_all()
        pool.purge()
    lines = checkpoint_lines()
    assert lines and lines[0]["reason"] == "schedule"
    assert (lines[0]["sequence"], lines[0]["mac"]) == (event.sequence, event.hash)
    assert audit_verify().ok


def test_production_refuses_a_short_audit_key_or_a_missing_key_file(tmp_path):
    result = manage("check", env=production_env(tmp_path, PROMPTCTL_AUDIT_KEY="too-short"))
    assert result.returncode != 0 and "PROMPTCTL_AUDIT_KEY is shorter than 32 characters" in result.stderr
    missing = str(tmp_path / "no-such.key")
    result = manage("check", env=production_env(tmp_path, PROMPTCTL_AUDIT_KEY=None, PROMPTCTL_AUDIT_KEY_FILE=missing))
    assert result.returncode != 0 and f"PROMPTCTL_AUDIT_KEY_FILE names {missing}, which is not a file" in result.stderr
