"""A corpus of bad inputs: each gets a 4xx with a message naming the field, and starts no session."""

from __future__ import annotations

import json

import pytest

from triage.models import TriageRequest

OK_BODY = "My invoice is wrong."


def good(**changes) -> dict:
    payload = {"subject": "Invoice", "body": OK_BODY}
    payload.update(changes)
    return {key: value for key, value in payload.items() if value is not ...}


# (case id, raw request body, expected status, {field: words its message must contain})
CORPUS = [
    ("empty body", b"", 422, {"json": "empty"}),
    ("not json", b"subject=hello", 400, {"json": "not valid JSON"}),
    ("truncated json", b'{"subject": "x", "body": "y"', 400, {"json": "not valid JSON"}),
    ("latin-1 bytes", '{"subject": "caf\xe9", "body": "x"}'.encode("latin-1"), 400, {"json": "not UTF-8"}),
    ("utf-16", json.dumps(good()).encode("utf-16"), 400, {"json": "not UTF-8"}),
    ("json array", b"[]", 400, {"json": "not an array"}),
    ("json string", b'"Invoice"', 400, {"json": "JSON object"}),
    ("json null", b"null", 400, {"json": "not null"}),
    ("json number", b"42", 400, {"json": "not a number"}),
    ("deep nesting", b"[" * 100_000, 400, {"json": "JSON"}),
    ("giant integer", b'{"subject": 1' + b"1" * 5000 + b', "body": "x"}', 400, {"json": "JSON"}),
    ("no fields", json.dumps({}).encode(), 422, {"subject": "required", "body": "required"}),
    ("missing subject", json.dumps(good(subject=...)).encode(), 422, {"subject": "required"}),
    ("missing body", json.dumps(good(body=...)).encode(), 422, {"body": "required"}),
    ("numeric subject", json.dumps(good(subject=12)).encode(), 422, {"subject": "must be a string, not a number"}),
    ("null subject", json.dumps(good(subject=None)).encode(), 422, {"subject": "must be a string, not null"}),
    ("list body", json.dumps(good(body=["a"])).encode(), 422, {"body": "must be a string, not an array"}),
    ("bool body", json.dumps(good(body=True)).encode(), 422, {"body": "must be a string, not a boolean"}),
    (
        "object subject",
        json.dumps(good(subject={"a": 1})).encode(),
        422,
        {"subject": "must be a string, not an object"},
    ),
    ("blank subject", json.dumps(good(subject="   ")).encode(), 422, {"subject": "empty"}),
    ("empty subject", json.dumps(good(subject="")).encode(), 422, {"subject": "empty"}),
    (
        "subject too long",
        json.dumps(good(subject="x" * 501)).encode(),
        422,
        {"subject": "limit of 500 characters (501 given)"},
    ),
    ("body too long", json.dumps(good(body="y" * 20_001)).encode(), 422, {"body": "limit of 20000 characters"}),
    ("NUL in subject", json.dumps(good(subject="a\x00b")).encode(), 422, {"subject": "NUL"}),
    ("NUL in body", json.dumps(good(body="a\x00b")).encode(), 422, {"body": "NUL"}),
    ("lone surrogate", b'{"subject": "bad \\ud800 text", "body": "x"}', 422, {"subject": "unpaired surrogate"}),
    ("numeric request_key", json.dumps(good(request_key=7)).encode(), 422, {"request_key": "must be a string"}),
    ("long request_key", json.dumps(good(request_key="k" * 201)).encode(), 422, {"request_key": "limit of 200"}),
    (
        "several bad fields",
        json.dumps({"subject": 1, "body": None, "request_key": []}).encode(),
        422,
        {"subject": "string", "body": "string", "request_key": "string"},
    ),
]


def _problems(response, status: int, fields: dict[str, str]) -> list[str]:
    if response.status_code != status:
        return [f"status {response.status_code} instead of {status}: {response.content[:300]!r}"]
    if not response["Content-Type"].startswith("application/json"):
        return [f"content type {response['Content-Type']}"]
    body = response.json()
    problems = [] if body.get("detail") else ["no detail saying what was refused"]
    messages = {error["field"]: error["message"] for error in body.get("errors", [])}
    for field, words in fields.items():
        if field not in messages:
            problems.append(f"no message for field {field!r}: {body}")
        elif words not in messages[field]:
            problems.append(f"{field}: {messages[field]!r} lacks {words!r}")
    return problems


@pytest.mark.parametrize("path", ["/triage", "/agents/ticket-triage/triage", "/triage/jobs"])
def test_bad_input_corpus_is_refused_per_field(api, emulator, path):
    """Every case of the corpus, on every endpoint that takes a ticket; all failures are reported together."""
    sessions_before = emulator.stats()["sessions"]["total"]
    failures = {}
    for name, raw, status, fields in CORPUS:
        problems = _problems(api.post(path, raw=raw), status, fields)
        if problems:
            failures[name] = problems
    assert not failures, failures
    assert TriageRequest.objects.count() == 0
    assert emulator.stats()["sessions"]["total"] == sessions_before, "a refused request must not start a session"


def test_a_body_over_the_server_limit_is_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100_000
    response = api.post("/triage", raw=json.dumps(good(body="z" * 200_000)).encode())
    assert response.status_code == 413
    assert response.json()["errors"][0]["field"] == "json"


def test_unknown_extra_fields_are_ignored_and_text_at_the_limits_is_served(api):
    response = api.post("/triage", good(subject="s" * 500, body="", priority_hint="P1"))
    assert response.status_code == 200, response.content
    assert response.json()["valid"] in (True, False)
