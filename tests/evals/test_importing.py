"""Parsing test-set files: all-or-nothing, every bad line named, labels checked."""

import json
from pathlib import Path

import pytest

from evals.importing import content_hash, label_warnings, ticket_file_parse

SHIPPED = Path(__file__).resolve().parents[2] / "evals" / "data" / "support_tickets.jsonl"
ALLOWED = {"team": ("billing", "auth", "api-platform", "dashboard"), "priority": ("P1", "P2", "P3")}


def _line(**fields):
    base = {"id": "T-1", "subject": "s", "body": "b", "team": "auth", "priority": "P2"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


def test_shipped_file_parses_with_twenty_cases_and_p0_warnings():
    report = ticket_file_parse(data=SHIPPED.read_bytes(), file_format="jsonl")
    assert report.ok, report.error_lines()
    assert len(report.cases) == 20
    assert {case.team for case in report.cases} == set(ALLOWED["team"])
    warnings = label_warnings(cases=[c.canonical() for c in report.cases], allowed=ALLOWED)
    assert warnings, "the shipped file labels some tickets P0"
    assert {w["label"] for w in warnings} == {"P0"}
    assert all(w["field"] == "priority" for w in warnings)
    assert "P1, P2, P3" in warnings[0]["message"]


def test_every_bad_jsonl_line_is_named_and_nothing_is_accepted():
    lines = [
        _line(id="A"),
        "{not json",
        _line(id="B", team=""),
        "",
        _line(id="C", priority=...),
        _line(id="A"),
        "[1, 2]",
        _line(id=17),
        _line(id="D", extra="x"),
        _line(id="E", tags=["x", 3]),
        _line(id="F", tags=["billing", "urgent"]),
    ]
    report = ticket_file_parse(data="\n".join(lines), file_format="jsonl")
    assert not report.ok
    by_line = {error.line: error.reason for error in report.errors}
    assert sorted(by_line) == [2, 3, 5, 6, 7, 8, 9, 10]
    assert "not valid JSON" in by_line[2]
    assert "'team' is empty" in by_line[3]
    assert "missing 'priority'" in by_line[5]
    assert "duplicate id 'A' (first on line 1)" in by_line[6]
    assert "expected a JSON object" in by_line[7]
    assert "'id' must be a string" in by_line[8]
    assert "unknown field" in by_line[9] and "'extra'" in by_line[9]
    assert "'tags'" in by_line[10]
    assert report.error_lines()[0].startswith("line 2: ")


def test_csv_parses_tags_and_names_bad_rows_by_their_first_line():
    text = (
        "id,subject,body,team,priority,tags\n"
        'T-1,Login,"cannot log in\nsince Monday",auth,P1,sso; urgent\n'
        "T-2,Invoice,wrong amount,billing,P2,\n"
        "T-3,Chart,,dashboard,P3,\n"
        "T-4,Too,many,columns,here,x,y\n"
    )
    report = ticket_file_parse(data=text.encode(), file_format="csv")
    assert [(e.line, e.reason) for e in report.errors] == [
        (5, "'body' is empty"),
        (6, "has 7 columns, the header has 6"),
    ]
    good = ticket_file_parse(data="\n".join(text.splitlines()[:4]) + "\n", file_format="csv")
    assert good.ok
    assert good.cases[0].tags == ("sso", "urgent")
    assert good.cases[0].body == "cannot log in\nsince Monday"
    assert good.cases[1].tags == ()


def test_csv_header_problems_refuse_the_file():
    report = ticket_file_parse(data="id,subject,team,prio\nT,s,auth,P1\n", file_format="csv")
    assert not report.ok
    assert report.errors[0].line == 1
    assert "missing column(s) body, priority" in report.errors[0].reason
    assert "unknown column(s) prio" in report.errors[0].reason


def test_empty_and_undecodable_files_are_refused():
    assert ticket_file_parse(data=b"\n\n", file_format="jsonl").error_lines() == ["line 1: the file holds no tickets"]
    report = ticket_file_parse(data=_line().encode() + b"\n\xff\xfe\n", file_format="jsonl")
    assert not report.ok
    assert report.errors[0].line == 2
    assert "UTF-8" in report.errors[0].reason


def test_content_hash_ignores_format_and_order_but_not_content():
    jsonl = "\n".join([_line(id="A", team="auth"), _line(id="B", team="billing")])
    csv_text = "id,subject,body,team,priority\nB,s,b,billing,P2\nA,s,b,auth,P2\n"
    first = ticket_file_parse(data=jsonl, file_format="jsonl")
    second = ticket_file_parse(data=csv_text, file_format="csv")
    assert first.content_hash == second.content_hash
    changed = ticket_file_parse(data=csv_text.replace("billing,P2", "billing,P1"), file_format="csv")
    assert changed.content_hash != first.content_hash
    assert content_hash([c.canonical() for c in first.cases]) == first.content_hash


def test_label_warnings_skip_unchecked_fields():
    cases = [{"id": "A", "team": "sales", "priority": "P9"}]
    assert label_warnings(cases=cases, allowed=None) == []
    only_team = label_warnings(cases=cases, allowed={"team": ("auth",)})
    assert [(w["ticket"], w["field"], w["label"]) for w in only_team] == [("A", "team", "sales")]


def test_unknown_format_is_a_programming_error():
    with pytest.raises(ValueError):
        ticket_file_parse(data="", file_format="xml")
