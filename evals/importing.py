"""Parsing and validating test-set files (JSONL and CSV) into a report.

The rule: a file is accepted whole or not at all. Parsing never stops at the
first problem; it collects every bad line with its number and a reason, so the
person fixing the file sees all of it in one go. Nothing here touches the
database: the import service stores the cases only when ``report.ok``.

Line numbers are physical lines of the file, counting from 1 (for CSV the
header is line 1, and a record spanning several lines is named by its first).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field

REQUIRED_FIELDS = ("id", "subject", "body", "team", "priority")
OPTIONAL_FIELDS = ("tags",)
KNOWN_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
FORMATS = ("jsonl", "csv")
# Fields compared as labels or keys: surrounding whitespace is never meaningful there.
STRIPPED_FIELDS = ("id", "team", "priority")


@dataclass(frozen=True)
class ParsedCase:
    """One labelled ticket as it will be stored."""

    line: int
    id: str
    subject: str
    body: str
    team: str
    priority: str
    tags: tuple[str, ...] = ()

    def canonical(self) -> dict:
        return {
            "id": self.id,
            "subject": self.subject,
            "body": self.body,
            "team": self.team,
            "priority": self.priority,
            "tags": list(self.tags),
        }


@dataclass(frozen=True)
class LineError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportReport:
    """What a file holds: its cases, or every reason it is refused."""

    format: str
    cases: list[ParsedCase] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.cases)

    @property
    def content_hash(self) -> str:
        return content_hash([case.canonical() for case in self.cases])

    def error_lines(self) -> list[str]:
        return [str(error) for error in self.errors]

    def as_dict(self) -> dict:
        return {
            "format": self.format,
            "ok": self.ok,
            "cases": len(self.cases),
            "errors": [{"line": e.line, "reason": e.reason} for e in self.errors],
        }


def content_hash(cases: list[dict]) -> str:
    """SHA-256 of the cases in canonical form, independent of file format and line order.

    Two files with the same tickets (JSONL or CSV, any order) are the same
    contents; any change to any field of any ticket is a different hash.
    """
    ordered = sorted(cases, key=lambda case: case["id"])
    canonical = json.dumps(ordered, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def format_from_filename(filename: str) -> str | None:
    lowered = filename.lower()
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lowered.endswith((".csv", ".tsv")):
        return "csv"
    return None


def ticket_file_parse(*, data: bytes | str, file_format: str) -> ImportReport:
    """Parse a whole file into an ``ImportReport``; never raises on bad content."""
    if file_format not in FORMATS:
        raise ValueError(f"unknown format {file_format!r}; expected one of {', '.join(FORMATS)}")
    report = ImportReport(format=file_format)
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            line = data[: error.start].count(b"\n") + 1
            report.errors.append(
                LineError(line, f"not UTF-8 text (byte {error.start} cannot be decoded); save the file as UTF-8")
            )
            return report
    else:
        text = data.removeprefix("\ufeff")
    if file_format == "jsonl":
        _parse_jsonl(text, report)
    else:
        _parse_csv(text, report)
    _check_duplicates(report)
    if not report.cases and not report.errors:
        report.errors.append(LineError(1, "the file holds no tickets"))
    return report


def _parse_jsonl(text: str, report: ImportReport) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            report.errors.append(LineError(number, f"not valid JSON ({error.msg} at column {error.colno})"))
            continue
        if not isinstance(record, dict):
            report.errors.append(LineError(number, f"expected a JSON object, got {type(record).__name__}"))
            continue
        _record_to_case(number, record, report)


def _parse_csv(text: str, report: ImportReport) -> None:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    previous_end = 0
    try:
        for row in reader:
            start = previous_end + 1
            previous_end = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if header is None:
                header = [cell.strip() for cell in row]
                problems = _header_problems(header)
                if problems:
                    report.errors.append(LineError(start, problems))
                    return
                continue
            if len(row) != len(header):
                report.errors.append(LineError(start, f"has {len(row)} columns, the header has {len(header)}"))
                continue
            record: dict = dict(zip(header, row, strict=True))
            if "tags" in record:
                record["tags"] = [tag.strip() for tag in record["tags"].replace(",", ";").split(";") if tag.strip()]
            _record_to_case(start, record, report)
    except csv.Error as error:
        report.errors.append(LineError(previous_end + 1, f"malformed CSV ({error}); the rest of the file was not read"))
    if header is None:
        report.errors.append(LineError(1, f"no header line; expected columns {', '.join(KNOWN_FIELDS)}"))


def _header_problems(header: list[str]) -> str | None:
    reasons = []
    missing = [name for name in REQUIRED_FIELDS if name not in header]
    if missing:
        reasons.append(f"header is missing column(s) {', '.join(missing)}")
    unknown = [name for name in header if name not in KNOWN_FIELDS]
    if unknown:
        reasons.append(f"header has unknown column(s) {', '.join(unknown)} (known: {', '.join(KNOWN_FIELDS)})")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        reasons.append(f"header repeats column(s) {', '.join(repeated)}")
    return "; ".join(reasons) or None


def _record_to_case(number: int, record: dict, report: ImportReport) -> None:
    reasons: list[str] = []
    values: dict[str, str] = {}
    for name in REQUIRED_FIELDS:
        if name not in record or record[name] is None:
            reasons.append(f"missing {name!r}")
            continue
        value = record[name]
        if not isinstance(value, str):
            reasons.append(f"{name!r} must be a string, got {type(value).__name__} {json.dumps(value)}")
            continue
        if name in STRIPPED_FIELDS:
            value = value.strip()
        if not value.strip():
            reasons.append(f"{name!r} is empty")
            continue
        values[name] = value
    tags: tuple[str, ...] = ()
    raw_tags = record.get("tags")
    if raw_tags is not None:
        if not isinstance(raw_tags, list) or not all(isinstance(tag, str) and tag.strip() for tag in raw_tags):
            reasons.append("'tags' must be a list of non-empty strings")
        else:
            tags = tuple(tag.strip() for tag in raw_tags)
    unknown = sorted(set(record) - set(KNOWN_FIELDS))
    if unknown:
        reasons.append(f"unknown field(s) {', '.join(map(repr, unknown))} (known: {', '.join(KNOWN_FIELDS)})")
    if reasons:
        report.errors.append(LineError(number, "; ".join(reasons)))
        return
    report.cases.append(ParsedCase(line=number, tags=tags, **values))


def _check_duplicates(report: ImportReport) -> None:
    first_line: dict[str, int] = {}
    unique: list[ParsedCase] = []
    for case in report.cases:
        if case.id in first_line:
            report.errors.append(
                LineError(case.line, f"duplicate id {case.id!r} (first on line {first_line[case.id]})")
            )
            continue
        first_line[case.id] = case.line
        unique.append(case)
    report.cases = unique
    report.errors.sort(key=lambda error: error.line)


def label_warnings(*, cases: list[dict], allowed: dict[str, tuple[str, ...]] | None) -> list[dict]:
    """Labels the agent's output schema cannot produce, one warning per (ticket, field).

    Such a ticket can never be scored right on that field, so scoring leaves the
    field out of its accuracy and the warning tells people to fix the label or
    the prompt. ``allowed`` is ``managed_agents.verdicts.allowed_labels(prompt)``; a
    field absent from it (or ``allowed=None``) is not checked.
    """
    if not allowed:
        return []
    warnings = []
    for case in cases:
        for name in ("team", "priority"):
            choices = allowed.get(name)
            if not choices or case[name] in choices:
                continue
            warnings.append(
                {
                    "ticket": case["id"],
                    "field": name,
                    "label": case[name],
                    "allowed": list(choices),
                    "message": (
                        f"ticket {case['id']} is labelled {name}={case[name]!r}, which the prompt cannot produce "
                        f"(allowed: {', '.join(choices)}); its {name} is left out of accuracy"
                    ),
                }
            )
    return warnings
