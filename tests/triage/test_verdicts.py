"""Verdict parsing: clean JSON, recoverable formats, and invalid output kept as a result."""

import pytest

from managed_agents.verdicts import VERDICT_INVALID, VERDICT_OK, allowed_labels, verdict_parse

V1_PROMPT = (
    "You are a support-ticket triage agent for a usage-billed API product.\n"
    "Read the ticket and respond with ONLY a single line of raw JSON (no code fences, no prose):\n"
    '{"team": "<billing|auth|api-platform|dashboard>", "priority": "<P1|P2|P3>"}\n'
    "Route based on the customer's actual problem, not surface keywords."
)
ALLOWED = allowed_labels(V1_PROMPT)


def test_allowed_labels_are_read_from_the_output_template():
    assert ALLOWED == {
        "team": ("billing", "auth", "api-platform", "dashboard"),
        "priority": ("P1", "P2", "P3"),
    }


def test_a_prompt_without_template_allows_anything():
    assert allowed_labels("Answer helpfully.") == {}
    verdict = verdict_parse(reply='{"team": "legal", "priority": "P0"}', allowed={})
    assert verdict.kind == VERDICT_OK and verdict.team == "legal"


def test_clean_single_line_is_ok_without_warning():
    verdict = verdict_parse(reply='{"team": "billing", "priority": "P1"}', allowed=ALLOWED)
    assert (verdict.kind, verdict.team, verdict.priority, verdict.format_warning) == (VERDICT_OK, "billing", "P1", None)


@pytest.mark.parametrize(
    "reply, warning_fragment",
    [
        ('```json\n{"team": "auth", "priority": "P2"}\n```', "code fence"),
        ('Sure! Here is the routing: {"team": "auth", "priority": "P2"} Hope that helps.', "surrounded"),
        ('{\n  "team": "auth",\n  "priority": "P2"\n}', "several lines"),
        ('{"team": "Auth", "priority": "p2"}', "case"),
    ],
)
def test_recoverable_formats_are_ok_with_a_format_warning(reply, warning_fragment):
    verdict = verdict_parse(reply=reply, allowed=ALLOWED)
    assert verdict.kind == VERDICT_OK
    assert (verdict.team, verdict.priority) == ("auth", "P2")
    assert warning_fragment in verdict.format_warning


@pytest.mark.parametrize(
    "reply, problem_fragment",
    [
        ("", "empty"),
        ("I think this is a billing problem.", "no JSON"),
        ('{"team": "billing"', "no JSON"),
        ('{"team": "legal", "priority": "P1"}', "legal"),
        ('{"team": "billing", "priority": "P0"}', "P0"),
        ('{"priority": "P1"}', "missing 'team'"),
        ('["billing", "P1"]', "no JSON"),
    ],
)
def test_invalid_output_is_a_result_that_keeps_the_raw_reply(reply, problem_fragment):
    verdict = verdict_parse(reply=reply, allowed=ALLOWED)
    assert verdict.kind == VERDICT_INVALID
    assert problem_fragment in verdict.problem
    assert verdict.raw == reply
