"""The input rules a test set file must pass before its tickets are parsed and stored.

``testset_file_parse`` is ``evals.importing.ticket_file_parse`` with these
rules around it, so a hostile file is refused with a message instead of a
traceback, a killed process or a half-written import:

- the whole file is at most ``PROMPTCTL_MAX_TESTSET_BYTES`` (20 MB by default;
  the CLI stops reading at the cap, ``promptctl.inputs.file_read_capped``) and
  holds at most ``PROMPTCTL_MAX_TESTSET_CASES`` tickets: one-line refusals;
- a JSONL line nests at most ``PROMPTCTL_MAX_JSON_DEPTH`` deep, and is checked
  before ``json.loads`` recurses into it; a number too long for Python to read
  is a bad line, not a ``ValueError``;
- every field is storable text (no NUL, no lone surrogate such as a
  ``\\ud800`` escape) and fits its column: id 200 characters, team 100,
  priority 50, each tag 100, and subject plus body at most
  ``PROMPTCTL_MAX_PROMPT_BYTES`` (a ticket is put to the agent as one message).

Bad lines join the parser's own list (``line N: reason``), so the person fixing
the file sees every problem at once, and the import stores nothing.
"""

from __future__ import annotations

import json

from django.conf import settings

from evals.importing import ImportReport, LineError, ParsedCase, ticket_file_parse
from managed_agents.validation import text_problem
from promptctl.errors import DomainError
from promptctl.inputs import json_too_deep, size_text

# The columns' widths in evals.models.TestCase (tests/evals/test_testset_input.py keeps them equal).
FIELD_MAX_LENGTHS = {"id": 200, "team": 100, "priority": 50}
TAG_MAX_LENGTH = 100


def testset_file_parse(*, data: bytes | str, file_format: str) -> ImportReport:
    """Parse a test set file under the input rules; refuses with ``DomainError`` only for the whole-file caps."""
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    cap = settings.PROMPTCTL_MAX_TESTSET_BYTES
    if size > cap:
        raise DomainError(
            f"The test set file is larger than the {size_text(cap)} cap: split it into smaller sets, "
            "or raise PROMPTCTL_MAX_TESTSET_BYTES."
        )
    early: list[LineError] = []
    if file_format == "jsonl":
        data, early = _jsonl_unparseable_lines_blanked(data)
    report = ticket_file_parse(data=data, file_format=file_format)
    cases_cap = settings.PROMPTCTL_MAX_TESTSET_CASES
    if len(report.cases) > cases_cap:
        raise DomainError(
            f"The test set file holds {len(report.cases):,} tickets; the cap is {cases_cap:,}: split it into "
            "smaller sets, or raise PROMPTCTL_MAX_TESTSET_CASES."
        )
    kept: list[ParsedCase] = []
    for case in report.cases:
        reasons = _case_problems(case)
        if reasons:
            report.errors.append(LineError(case.line, "; ".join(reasons)))
        else:
            kept.append(case)
    report.cases = kept
    report.errors.extend(early)
    report.errors.sort(key=lambda error: error.line)
    return report


def _jsonl_unparseable_lines_blanked(data: bytes | str) -> tuple[bytes | str, list[LineError]]:
    """Lines ``json.loads`` must not be given (too deep) or cannot read without a ``ValueError``, blanked.

    A blank line is skipped by the parser, so line numbers stay the same and
    every other line is still checked. Undecodable bytes are left for the
    parser, which names the first one.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return data, []
    else:
        text = data
    limit = settings.PROMPTCTL_MAX_JSON_DEPTH
    lines = text.splitlines()
    errors: list[LineError] = []
    for index, line in enumerate(lines):
        reason = None
        if json_too_deep(line, limit=limit):
            reason = (
                f"nests arrays or objects deeper than {limit} levels; a ticket needs 2 "
                "(raise PROMPTCTL_MAX_JSON_DEPTH only if this is really a ticket)"
            )
        else:
            try:
                json.loads(line)
            except json.JSONDecodeError:
                pass  # the parser words these with the column
            except (ValueError, RecursionError) as error:
                reason = f"cannot be read as JSON ({str(error).splitlines()[0][:120]})"
        if reason:
            errors.append(LineError(index + 1, reason))
            lines[index] = ""
    if not errors:
        return data, []
    return "\n".join(lines), errors


def _case_problems(case: ParsedCase) -> list[str]:
    reasons = []
    for name in ("id", "subject", "body", "team", "priority"):
        problem = text_problem(getattr(case, name))
        if problem:
            reasons.append(f"{name!r} {problem}")
    for name, width in FIELD_MAX_LENGTHS.items():
        value = getattr(case, name)
        if len(value) > width:
            reasons.append(f"{name!r} is {len(value):,} characters; at most {width}")
    for tag in case.tags:
        problem = text_problem(tag)
        if problem or len(tag) > TAG_MAX_LENGTH:
            reasons.append(f"tag {tag[:30]!r} {problem or f'is over {TAG_MAX_LENGTH} characters'}")
            break
    if not reasons:
        size = len(case.subject.encode("utf-8")) + len(case.body.encode("utf-8"))
        cap = settings.PROMPTCTL_MAX_PROMPT_BYTES
        if size > cap:
            reasons.append(f"subject and body are {size:,} bytes; a ticket takes at most {cap:,}")
    return reasons
