"""Test set import under the input rules: hostile files are refused with a message, quickly, and nothing is stored."""

from __future__ import annotations

import io
import json
import time

import pytest
from django.core.management import call_command

from evals import services
from evals.models import TestCase, TestSet
from evals.testset_input import FIELD_MAX_LENGTHS
from promptctl.errors import DomainError


def ticket(number: int, **fields) -> dict:
    return {
        "id": f"T-{number}",
        "subject": "Invoice is wrong",
        "body": "We were charged twice.",
        "team": "billing",
        "priority": "P2",
        **fields,
    }


def jsonl(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def good(number: int, **fields) -> str:
    return json.dumps(ticket(number, **fields))


def refused_lines(data: bytes) -> dict[int, str]:
    with pytest.raises(services.TestSetFileRefused) as refusal:
        services.testset_import(name="hostile", data=data, filename="hostile.jsonl")
    assert not TestSet.objects.exists() and not TestCase.objects.exists()
    return {error.line: error.reason for error in refusal.value.report.errors}


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("promptctl", *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        return int(exit_.code), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


# --- bad lines, named by number -------------------------------------------------------------------


def test_a_lone_surrogate_escape_is_a_bad_line(db):
    reasons = refused_lines(
        jsonl(good(1), '{"id": "T-2", "subject": "a\\ud800b", "body": "b", "team": "x", "priority": "P1"}')
    )

    assert list(reasons) == [2]
    assert "'subject' holds a lone surrogate" in reasons[2]


def test_a_nul_character_is_a_bad_line_on_every_database(db):
    reasons = refused_lines(jsonl(good(1, body="before\x00after"), good(2)))

    assert list(reasons) == [1]
    assert "'body' holds a NUL character" in reasons[1]


def test_deep_nesting_is_a_bad_line_not_a_recursion_error(db):
    deep = '{"id": "T-2", "tags": ' + "[" * 100_000 + "]" * 100_000 + "}"

    reasons = refused_lines(jsonl(good(1), deep, good(3, team="auth" * 100)))

    assert "nests arrays or objects deeper than 20 levels" in reasons[2]
    assert "'team' is 400 characters; at most 100" in reasons[3]  # the lines after it are still checked


def test_brackets_inside_strings_do_not_count_as_nesting(db, settings):
    settings.PROMPTCTL_MAX_JSON_DEPTH = 3
    imported = services.testset_import(
        name="brackets", data=jsonl(good(1, body="[[[[{{{{ quoted, not nested ]]]]}}}}")), filename="b.jsonl"
    )

    assert imported.version.case_count == 1


def test_a_number_too_long_to_read_is_a_bad_line(db):
    reasons = refused_lines(jsonl(good(1), '{"id": ' + "9" * 5000 + "}"))

    assert "cannot be read as JSON" in reasons[2]


@pytest.mark.parametrize("field", sorted(FIELD_MAX_LENGTHS))
def test_over_long_fields_are_bad_lines(db, field):
    reasons = refused_lines(jsonl(good(1, **{field: "x" * (FIELD_MAX_LENGTHS[field] + 1)})))

    assert f"'{field}' is {FIELD_MAX_LENGTHS[field] + 1:,} characters" in reasons[1]


def test_the_checked_widths_are_the_stored_widths():
    widths = {"id": "external_id", "team": "team", "priority": "priority"}
    assert {name: TestCase._meta.get_field(column).max_length for name, column in widths.items()} == FIELD_MAX_LENGTHS


def test_a_ticket_larger_than_a_prompt_is_a_bad_line(db, settings):
    settings.PROMPTCTL_MAX_PROMPT_BYTES = 1000

    reasons = refused_lines(jsonl(good(1, body="b" * 1001)))

    assert "a ticket takes at most 1,000" in reasons[1]


# --- whole-file caps ------------------------------------------------------------------------------


def test_too_many_tickets_is_one_line(db, settings):
    settings.PROMPTCTL_MAX_TESTSET_CASES = 3

    with pytest.raises(DomainError) as refused:
        services.testset_import(name="many", data=jsonl(*(good(n) for n in range(4))), filename="many.jsonl")

    assert str(refused.value).startswith("The test set file holds 4 tickets; the cap is 3")
    assert "\n" not in str(refused.value)
    assert not TestSet.objects.exists()


def test_a_file_over_the_size_cap_is_refused_by_the_service(db, settings):
    settings.PROMPTCTL_MAX_TESTSET_BYTES = 1000

    with pytest.raises(DomainError) as refused:
        services.testset_import(name="big", data=b" " * 1001, filename="big.jsonl")

    assert "larger than the 1 KB cap" in str(refused.value)


def test_cli_refuses_dev_zero_quickly(db):
    started = time.monotonic()

    code, out, err = run("testset", "import", "/dev/zero", "--name", "zeros", "--format", "jsonl")

    assert time.monotonic() - started < 3
    assert code == 1 and out == ""
    assert "larger than the 20 MB cap" in err and "PROMPTCTL_MAX_TESTSET_BYTES" in err
    assert len(err.strip().splitlines()) == 1, err
    assert not TestSet.objects.exists()


def test_cli_names_the_first_byte_that_is_not_utf8(db, tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(jsonl(good(1)) + "café".encode("latin-1"))

    code, _, err = run("testset", "import", str(path), "--name", "latin")

    assert code == 1 and "Traceback" not in err
    assert f"byte {len(jsonl(good(1))) + 3} cannot be decoded" in err
