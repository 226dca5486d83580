"""Archiving the audit log: seal a segment, export it, delete it from the database, and still verify everything.

Through the real CLI (``call_command``), the real database triggers (SQLite by
default; the same file under ``DATABASE_URL=postgres://…`` runs them on
PostgreSQL) and the real checkpoint file. The insider is played with raw SQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.db import DatabaseError, connection, transaction

from promptctl.audit import audit_checkpoint_publish, audit_record, audit_verify
from promptctl.models import AuditEvent, AuditSegment
from tests.promptctl.audit_support import (
    as_owner,
    as_owner_everywhere,
    checkpoint_lines,
    cli,
    kinds,
    rewrite_from,
    seal_with_own_key,
)


def _notes(count: int, start: int = 0) -> None:
    for number in range(start, start + count):
        with transaction.atomic():
            audit_record(actor=None, verb="test.note", object_type="test", object_id=str(number))


def _seal(through: int, out: Path | None = None) -> AuditSegment:
    arguments = ["audit", "seal", "--through", str(through)] + (["--out", str(out)] if out else [])
    code, stdout, stderr = cli(*arguments)
    assert code == 0, stderr
    assert "Sealed segment" in stdout
    return AuditSegment.objects.order_by("-number").first()


def _archive(number: int) -> None:
    code, stdout, stderr = cli("audit", "archive", "--segment", str(number))
    assert code == 0, stderr
    assert f"Archived segment {number}" in stdout


def _raw(sql: str, params: list) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.fixture
def sealed(checkpointed_history, tmp_path):
    """A chain of history plus 30 notes, events 1..20 sealed and exported (not yet archived)."""
    _notes(30)
    audit_checkpoint_publish(reason="command")
    segment = _seal(20, tmp_path / "segment-1.jsonl")
    return segment


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


# --- sealing and archiving ----------------------------------------------------------------------


def test_an_archived_segment_verifies_on_its_own_and_the_live_chain_from_its_seal(sealed, tmp_path):
    path = Path(sealed.export_path)
    assert (sealed.first_sequence, sealed.last_sequence, sealed.export_verified) == (1, 20, True)
    header = json.loads(_lines(path)[0])
    assert (header["first_sequence"], header["last_sequence"], header["events"]) == (1, 20, 20)
    assert header["previous_seal_mac"] == "0" * 64
    assert header["seal_mac"] == AuditEvent.objects.get(sequence=20).hash
    seals = [line for line in checkpoint_lines() if line["reason"] == "seal"]
    assert [(line["sequence"], line["mac"]) for line in seals] == [(20, sealed.last_mac)]
    assert AuditEvent.objects.filter(verb="audit.seal").count() == 1

    _archive(1)
    assert not AuditEvent.objects.filter(sequence__lte=20).exists()
    assert AuditEvent.objects.order_by("sequence").first().sequence == 21
    segment = AuditSegment.objects.get(number=1)
    assert segment.archived_at is not None and segment.archived_events == 20

    result = audit_verify()
    assert result.ok, result.message
    assert result.archived_through == 20
    assert "from the seal of #20" in result.message
    head = AuditEvent.objects.order_by("-sequence").first().sequence
    assert result.checked == head - 20

    code, stdout, stderr = cli("audit", "verify", "--segment", str(path))
    assert code == 0, stderr
    assert "Audit segment 1 verified: events #1 to #20 (20 events)" in stdout
    assert "The checkpoint file records the same seal." in stdout

    # Later events and a second segment, sealed from where the first ended up to the latest checkpoint.
    _notes(5, start=100)
    audit_checkpoint_publish(reason="command")
    code, stdout, stderr = cli("audit", "seal", "--out", str(tmp_path / "segment-2.jsonl"))
    assert code == 0, stderr
    second = AuditSegment.objects.get(number=2)
    assert second.first_sequence == 21 and second.previous_seal_mac == sealed.last_mac
    _archive(2)
    result = audit_verify()
    assert result.ok, result.message
    assert result.archived_through == second.last_sequence
    assert cli("audit", "verify", "--segment", str(tmp_path / "segment-2.jsonl"))[0] == 0
    code, stdout, _ = cli("audit", "verify")
    assert code == 0 and f"from the seal of #{second.last_sequence}" in stdout


def test_sealing_refuses_a_range_that_is_sealed_already_or_past_the_head(sealed):
    code, _, stderr = cli("audit", "seal", "--through", "10")
    assert code != 0 and "events up to #20 are sealed already" in stderr
    head = AuditEvent.objects.order_by("-sequence").first().sequence
    code, _, stderr = cli("audit", "seal", "--through", str(head + 5))
    assert code != 0 and f"the chain ends at #{head}" in stderr
    assert AuditSegment.objects.count() == 1


def test_a_broken_chain_is_not_sealed(checkpointed_history, tmp_path):
    _notes(5)
    rewrite_from(3, edit=lambda event: setattr(event, "object_repr", "x"), seal=seal_with_own_key)
    code, _, stderr = cli("audit", "seal", "--through", "5", "--out", str(tmp_path / "s.jsonl"))
    assert code != 0 and "Not sealed" in stderr
    assert not (tmp_path / "s.jsonl").exists() and AuditSegment.objects.count() == 0


# --- a tampered export --------------------------------------------------------------------------


def test_a_changed_line_in_the_export_is_named_and_archiving_refused(sealed):
    path = Path(sealed.export_path)
    lines = _lines(path)
    event = json.loads(lines[5])  # line 6: event #5
    event["object_repr"] = "nothing to see here"
    lines[5] = json.dumps(event, sort_keys=True, separators=(",", ":"))
    _write(path, lines)
    code, stdout, stderr = cli("audit", "verify", "--segment", str(path))
    assert code != 0
    assert "line 6 (event #5) was changed: it does not match its MAC" in stdout
    assert "the file MAC does not match its contents" in stdout
    code, _, stderr = cli("audit", "archive", "--segment", "1")
    assert code != 0 and "Not archived" in stderr
    assert AuditEvent.objects.filter(sequence__lte=20).count() == 20


def test_a_missing_line_in_the_export_is_named(sealed):
    path = Path(sealed.export_path)
    lines = _lines(path)
    del lines[8]  # event #8
    _write(path, lines)
    code, stdout, _ = cli("audit", "verify", "--segment", str(path))
    assert code != 0
    assert "event #8 is missing (line 9 goes on with #9)" in stdout


def test_a_wrong_range_in_the_export_is_named(sealed):
    path = Path(sealed.export_path)
    lines = _lines(path)
    header = json.loads(lines[0])
    header["last_sequence"] = 15  # claims a shorter segment than it holds
    lines[0] = json.dumps(header, sort_keys=True, separators=(",", ":"))
    _write(path, lines)
    code, stdout, _ = cli("audit", "verify", "--segment", str(path))
    assert code != 0
    assert "holds event #16, outside the range the header names (#1 to #15)" in stdout
    assert "the file MAC does not match its contents" in stdout


def test_a_cut_export_is_named(sealed):
    path = Path(sealed.export_path)
    _write(path, _lines(path)[:-4])  # the file MAC and the last events gone
    code, stdout, _ = cli("audit", "verify", "--segment", str(path))
    assert code != 0
    assert "is not the file MAC: the file was cut or appended to" in stdout
    assert "is missing from the end (the header names #1 to #20)" in stdout


# --- the database guards ------------------------------------------------------------------------


def test_the_database_refuses_deleting_unsealed_or_unarchived_events_and_the_seal_row(sealed):
    head = AuditEvent.objects.order_by("-sequence").first().sequence
    with pytest.raises(DatabaseError, match="append-only"):
        _raw("DELETE FROM promptctl_auditevent WHERE sequence = %s", [head - 1])  # never sealed
    with pytest.raises(DatabaseError, match="append-only"):
        _raw("DELETE FROM promptctl_auditevent WHERE sequence = %s", [5])  # sealed, not archived
    with pytest.raises(DatabaseError, match="segment"):
        _raw("DELETE FROM promptctl_auditsegment WHERE number = %s", [1])
    with pytest.raises(DatabaseError, match="segment"):
        _raw("UPDATE promptctl_auditsegment SET last_sequence = %s WHERE number = %s", [head, 1])
    assert AuditEvent.objects.filter(sequence__in=[5, head - 1]).count() == 2
    assert AuditSegment.objects.filter(number=1, last_sequence=20).exists()

    _archive(1)
    with pytest.raises(DatabaseError, match="append-only"):
        _raw("DELETE FROM promptctl_auditevent WHERE sequence = %s", [21])  # right after the archived range
    with pytest.raises(DatabaseError, match="segment"):
        _raw("DELETE FROM promptctl_auditsegment WHERE number = %s", [1])
    with pytest.raises(DatabaseError, match="segment"):
        _raw("UPDATE promptctl_auditsegment SET archived_at = NULL WHERE number = %s", [1])
    assert audit_verify().ok


def test_a_segment_marked_archived_by_hand_with_its_events_still_here_is_named(sealed, admin_user):
    """Marking the row archived (its one allowed update) without deleting the events blocks archiving for good:
    verify names it, and archive says why instead of "archived already"."""
    from django.test import Client
    from django.urls import reverse

    _raw("UPDATE promptctl_auditsegment SET archived_at = CURRENT_TIMESTAMP WHERE number = %s", [1])  # allowed once
    result = audit_verify()
    assert not result.ok
    assert "segment 1 is marked archived, but events #1 to #20 are still in the database" in result.message
    assert "made by hand" in result.message
    code, _stdout, stderr = cli("audit", "archive", "--segment", "1")
    assert code == 1 and "Not archived: segment 1 is marked archived" in stderr
    client = Client()
    client.force_login(admin_user)
    page = client.get(reverse("admin:promptctl_auditsegment_changelist")).content.decode()
    assert "the mark was made by hand" in page


def test_an_archived_count_changed_after_archiving_is_named(sealed):
    _archive(1)
    assert audit_verify().ok
    # The count sits outside the row MAC; the audit.archive event recorded the real one.
    as_owner_everywhere(("UPDATE promptctl_auditsegment SET archived_events = %s WHERE number = %s", [5, 1]))
    result = audit_verify()
    assert not result.ok
    # Only the count is named: the live chain still starts from the seal (no "events #1 to #20 are missing").
    assert [(finding.kind, finding.detail) for finding in result.findings] == [
        ("segment", "segment 1 says 5 events were removed; its audit.archive event says 20.")
    ]
    assert result.archived_through == 20


# --- after archiving, the live chain is still watched ---------------------------------------------


def test_after_archiving_a_deleted_or_rewritten_live_event_is_still_named(sealed):
    _archive(1)
    as_owner(("DELETE FROM promptctl_auditevent WHERE sequence = %s", [23]))
    result = audit_verify()
    assert not result.ok and "deleted_middle" in kinds(result)
    assert "events #23 to #23 are missing" in result.problem


def test_after_archiving_a_rewritten_first_live_event_is_named(sealed):
    _archive(1)
    as_owner(("UPDATE promptctl_auditevent SET object_repr = %s WHERE sequence = %s", ["x", 21]))
    result = audit_verify()
    assert not result.ok and "edited" in kinds(result)
    assert result.first_broken_sequence == 21


def test_after_archiving_a_rewrite_resealed_without_the_key_is_named(sealed):
    _archive(1)
    rewrite_from(22, edit=lambda event: setattr(event, "object_repr", "x"), seal=seal_with_own_key)
    result = audit_verify()
    assert not result.ok and "edited" in kinds(result)
    assert result.first_broken_sequence == 22


def test_a_pin_moved_outside_promptctl_after_archiving_is_still_named(sealed):
    """The pin's last audited move is archived; the state baseline does not hide a later change."""
    _archive(1)
    assert audit_verify().ok
    as_owner_everywhere(("UPDATE promptctl_pin SET revision = revision + 7", []))
    result = audit_verify()
    assert not result.ok and kinds(result) == {"state_drift"}
    assert "moved outside promptctl" in result.problem or "revision 8" in result.message


def test_deleting_a_sealed_range_without_the_archive_command_is_named(sealed):
    """An insider marks the segment archived (the one update its row allows) and deletes its events by hand."""
    _raw("UPDATE promptctl_auditsegment SET archived_at = CURRENT_TIMESTAMP WHERE number = %s", [1])
    _raw("DELETE FROM promptctl_auditevent WHERE sequence <= %s", [20])
    result = audit_verify()
    assert not result.ok and "segment" in kinds(result)
    assert "no `audit.archive` event" in result.problem


def test_events_deleted_before_any_archive_are_still_named(sealed):
    as_owner(("DELETE FROM promptctl_auditevent WHERE sequence <= %s", [20]))
    result = audit_verify()
    assert not result.ok and "deleted_middle" in kinds(result)
    assert result.archived_through == 0


def test_an_agent_policy_changed_after_its_creation_was_archived_is_named(sealed):
    _archive(1)
    after = AuditEvent.objects.get(verb="audit.archive").after
    assert any("has no audited creation" in line and "required_approvals 1" in line for line in after["state_baseline"])
    assert audit_verify().ok
    as_owner_everywhere(("UPDATE promptctl_agent SET required_approvals = 5", []))
    result = audit_verify()
    assert not result.ok and kinds(result) == {"state_drift"}
    assert "required_approvals 5" in result.message


def test_the_segments_page_shows_each_seal_and_names_a_forged_row(sealed, admin_user):
    from django.test import Client
    from django.urls import reverse

    _archive(1)
    client = Client()
    client.force_login(admin_user)
    url = reverse("admin:promptctl_auditsegment_changelist")
    page = client.get(url).content.decode()
    assert "#1 to #20" in page and "20 events removed" in page and "checked" in page
    assert '<td class="field-seal">intact</td>' in page
    as_owner_everywhere(("UPDATE promptctl_auditsegment SET last_sequence = %s WHERE number = %s", [25, 1]))
    page = client.get(url).content.decode()
    assert "#1 to #25" in page and "does not match its MAC (changed or forged in the database)" in page


@pytest.mark.postgres
def test_the_runtime_role_may_not_archive_and_is_told_who_may(runtime_role, sealed):
    from tests.db_roles_support import connected_as

    events = AuditEvent.objects.count()
    with connected_as(runtime_role):
        code, _stdout, stderr = cli("audit", "archive", "--segment", "1")
    assert code == 1 and "this database login may not" in stderr and "as the tables' owner" in stderr
    assert AuditEvent.objects.count() == events and AuditSegment.objects.get(number=1).archived_at is None
    _archive(1)  # the owner may
    assert audit_verify().ok


@pytest.mark.django_db
@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null", "."])
def test_a_segment_to_verify_that_is_not_a_regular_file_is_refused_at_once(special, tmp_path):
    code, _stdout, stderr = cli("audit", "verify", "--segment", special if special != "." else str(tmp_path))
    assert code == 1 and "it is not a regular file: not a segment export" in stderr


def test_a_seal_published_after_a_newer_checkpoint_does_not_shrink_the_coverage(sealed):
    """The seal's checkpoint (#20) is the newest line in the file; the coverage still runs from the highest one."""
    lines = checkpoint_lines()
    assert lines[-1]["reason"] == "seal" and lines[-1]["sequence"] == 20
    highest = max(line["sequence"] for line in lines)
    assert highest > 20
    result = audit_verify()
    assert result.ok and result.checkpoint.sequence == highest
    assert f"Latest checkpoint: #{highest}," in result.message


def test_a_segment_whose_seal_line_left_the_checkpoint_file_says_so(sealed):
    from promptctl.audit.checkpoints import checkpoint_path

    path = checkpoint_path()
    kept = [line for line in path.read_text().splitlines() if '"reason":"seal"' not in line.replace(" ", "")]
    assert len(kept) < len(path.read_text().splitlines())
    path.write_text("\n".join(kept) + "\n")
    code, stdout, stderr = cli("audit", "verify", "--segment", sealed.export_path)
    assert code == 0, stderr  # the file itself is intact under the key ring
    assert "The checkpoint file records no seal of #20: the seal rests on the audit key alone" in stdout
    assert not audit_verify().ok  # the live chain's seal is checked against the file, and named missing


def test_a_plain_checkpoint_at_the_seal_does_not_pass_for_the_seal(sealed, tmp_path):
    """`audit seal` with no --through seals up to the latest checkpoint: that one is not the seal's line."""
    from promptctl.audit.checkpoints import checkpoint_path

    code, _stdout, stderr = cli("audit", "seal", "--out", str(tmp_path / "segment-2.jsonl"))
    assert code == 0, stderr
    second = AuditSegment.objects.get(number=2)
    lines = checkpoint_lines()
    assert any(line["sequence"] == second.last_sequence and line["reason"] != "seal" for line in lines)
    path = checkpoint_path()
    kept = [line for line in path.read_text().splitlines() if '"reason":"seal"' not in line.replace(" ", "")]
    path.write_text("\n".join(kept) + "\n")
    code, stdout, stderr = cli("audit", "verify", "--segment", str(tmp_path / "segment-2.jsonl"))
    assert code == 0, stderr
    assert f"records no seal of #{second.last_sequence}" in stdout
