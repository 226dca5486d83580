"""Scoring one run and comparing two, as pure functions over plain data.

Rules kept here (and why):

* A ticket, not an attempt, is the unit of accuracy. With ``repeats`` > 1 a
  ticket counts as correct when a strict majority of its scored attempts is
  correct. Attempts of one ticket are not independent trials, so counting them
  separately would shrink the Wilson interval dishonestly; attempt-level
  accuracy is still reported beside it.
* ``error`` attempts (the gateway gave up: outage, timeout) say nothing about
  the prompt: they are left out of correctness and counted as errors. A ticket
  with no scored attempt is "unscored". ``invalid`` attempts (the model replied
  but not in the required format) are the prompt's fault: they count as wrong.
* A label the prompt cannot produce (``P0`` when the template allows P1–P3) is
  left out of that field's accuracy and reported as a warning, never silently
  scored as a model error.
* A comparison pairs tickets by id and counts only tickets scored in both
  runs, so a network error in one run cannot look like a regression. A team
  regresses when its correct count drops by more than the tolerance.

Everything returned is JSON-serialisable: runs store their score, and
comparisons store their snapshot, exactly as computed here.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from evals.statistics import mcnemar_exact_p, percentile, wilson_interval

INVALID_COLUMN = "(invalid)"
ERROR_COLUMN = "(error)"
KIND_OK = "ok"
KIND_INVALID = "invalid"
KIND_ERROR = "error"


@dataclass(frozen=True)
class CaseLabel:
    id: str
    team: str
    priority: str


@dataclass(frozen=True)
class Outcome:
    """One scored attempt: what the agent answered for one ticket."""

    ticket: str
    attempt: int
    kind: str
    team: str | None = None
    priority: str | None = None
    latency_seconds: float | None = None


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _interval(correct: int, total: int) -> list[float] | None:
    interval = wilson_interval(successes=correct, total=total)
    return list(interval) if interval else None


def _majority(flags: list[bool]) -> bool | None:
    if not flags:
        return None
    return sum(flags) * 2 > len(flags)


class _Tally:
    """Counters for one group of tickets (a team, or all of them)."""

    def __init__(self) -> None:
        self.correct = 0
        self.total = 0
        self.priority_correct = 0
        self.priority_total = 0
        self.unscored = 0
        self.excluded = 0
        self.attempts = 0
        self.attempts_correct = 0
        self.invalid = 0
        self.errors = 0
        self.latencies: list[float] = []

    def as_dict(self) -> dict:
        return {
            "correct": self.correct,
            "total": self.total,
            "accuracy": _rate(self.correct, self.total),
            "interval": _interval(self.correct, self.total),
            "priority_correct": self.priority_correct,
            "priority_total": self.priority_total,
            "priority_accuracy": _rate(self.priority_correct, self.priority_total),
            "unscored": self.unscored,
            "excluded": self.excluded,
            "attempts": self.attempts,
            "attempt_accuracy": _rate(self.attempts_correct, self.attempts - self.errors),
            "invalid": self.invalid,
            "errors": self.errors,
            "invalid_rate": _rate(self.invalid, self.attempts - self.errors),
            "latency_p50": percentile(self.latencies, 0.50),
            "latency_p95": percentile(self.latencies, 0.95),
        }


def run_score(
    *,
    cases: Iterable[CaseLabel],
    outcomes: Iterable[Outcome],
    allowed: dict[str, tuple[str, ...]] | None = None,
) -> dict:
    """Per-team and overall scores, confusion matrix, per-ticket answers and flaky tickets."""
    cases = list(cases)
    by_ticket: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_ticket[outcome.ticket].append(outcome)
    allowed = allowed or {}
    allowed_teams = allowed.get("team") or ()
    allowed_priorities = allowed.get("priority") or ()

    overall = _Tally()
    teams: dict[str, _Tally] = {}
    confusion: dict[str, Counter] = defaultdict(Counter)
    tickets: dict[str, dict] = {}
    predicted_columns: set[str] = set()

    for case in sorted(cases, key=lambda c: (c.team, c.id)):
        team_tally = teams.setdefault(case.team, _Tally())
        attempts = sorted(by_ticket.get(case.id, []), key=lambda o: o.attempt)
        scored = [o for o in attempts if o.kind != KIND_ERROR]
        team_reachable = not allowed_teams or case.team in allowed_teams
        priority_reachable = not allowed_priorities or case.priority in allowed_priorities
        team_flags = [o.kind == KIND_OK and o.team == case.team for o in scored]
        priority_flags = [o.kind == KIND_OK and o.priority == case.priority for o in scored]
        correct = _majority(team_flags) if team_reachable else None
        priority_correct = _majority(priority_flags) if priority_reachable else None
        answers = [o.team if o.kind == KIND_OK else INVALID_COLUMN for o in scored]
        answer_counts = Counter(answers)
        modal_answer = answer_counts.most_common(1)[0][0] if answers else None
        agreement = answer_counts.most_common(1)[0][1] / len(answers) if answers else None

        for tally in (overall, team_tally):
            tally.attempts += len(attempts)
            tally.errors += len(attempts) - len(scored)
            tally.invalid += sum(1 for o in scored if o.kind == KIND_INVALID)
            tally.latencies.extend(o.latency_seconds for o in scored if o.latency_seconds is not None)
            if not scored:
                tally.unscored += 1
            if not team_reachable:
                tally.excluded += 1
            elif correct is not None:
                tally.total += 1
                tally.correct += int(correct)
                tally.attempts_correct += sum(team_flags)
            if priority_correct is not None:
                tally.priority_total += 1
                tally.priority_correct += int(priority_correct)

        for outcome in attempts:
            if outcome.kind == KIND_OK:
                column = outcome.team or INVALID_COLUMN
            elif outcome.kind == KIND_INVALID:
                column = INVALID_COLUMN
            else:
                column = ERROR_COLUMN
            confusion[case.team][column] += 1
            predicted_columns.add(column)

        tickets[case.id] = {
            "team": case.team,
            "priority": case.priority,
            "scored": bool(scored),
            "excluded": not team_reachable,
            "correct": correct,
            "priority_correct": priority_correct,
            "answer": modal_answer,
            "agreement": agreement,
            "attempts": [
                {"attempt": o.attempt, "kind": o.kind, "team": o.team, "priority": o.priority} for o in attempts
            ],
        }

    expected_teams = sorted(teams)
    extra_columns = sorted(predicted_columns - set(expected_teams) - {INVALID_COLUMN, ERROR_COLUMN})
    columns = expected_teams + extra_columns + [c for c in (INVALID_COLUMN, ERROR_COLUMN) if c in predicted_columns]
    agreements = [t["agreement"] for t in tickets.values() if t["agreement"] is not None]
    flaky = sorted(ticket_id for ticket_id, t in tickets.items() if t["agreement"] is not None and t["agreement"] < 1)
    return {
        "overall": overall.as_dict(),
        "teams": {team: teams[team].as_dict() for team in expected_teams},
        "confusion": {
            "rows": expected_teams,
            "columns": columns,
            "counts": {row: {column: confusion[row][column] for column in columns} for row in expected_teams},
        },
        "tickets": tickets,
        "agreement_mean": sum(agreements) / len(agreements) if agreements else None,
        "flaky": flaky,
    }


def _side(correct: int, total: int) -> dict:
    return {
        "correct": correct,
        "total": total,
        "accuracy": _rate(correct, total),
        "interval": _interval(correct, total),
    }


def runs_compare(*, baseline: dict, candidate: dict, tolerance: int) -> dict:
    """Compare two ``run_score`` results on the tickets scored in both.

    A team regresses when candidate correct < baseline correct - tolerance;
    the comparison regresses when any team does. The McNemar p-value says how
    surprising the flips would be if the two versions behaved the same.
    """
    if tolerance < 0:
        raise ValueError("tolerance cannot be negative")
    baseline_tickets = baseline["tickets"]
    candidate_tickets = candidate["tickets"]
    team_counts: dict[str, dict[str, int]] = {}
    flips: list[dict] = []
    unpaired: list[str] = []

    for ticket_id in sorted(set(baseline_tickets) | set(candidate_tickets)):
        before = baseline_tickets.get(ticket_id)
        after = candidate_tickets.get(ticket_id)
        if before is None or after is None or not before["scored"] or not after["scored"]:
            unpaired.append(ticket_id)
            continue
        if before["correct"] is None or after["correct"] is None:
            continue  # a label the prompt cannot produce: reported as a warning, not compared
        team = before["team"]
        counts = team_counts.setdefault(team, {"baseline": 0, "candidate": 0, "total": 0, "rw": 0, "wr": 0})
        counts["total"] += 1
        counts["baseline"] += int(before["correct"])
        counts["candidate"] += int(after["correct"])
        if before["correct"] and not after["correct"]:
            direction = "right_to_wrong"
            counts["rw"] += 1
        elif after["correct"] and not before["correct"]:
            direction = "wrong_to_right"
            counts["wr"] += 1
        else:
            continue
        flips.append(
            {
                "ticket": ticket_id,
                "team": team,
                "direction": direction,
                "baseline_answer": before["answer"],
                "candidate_answer": after["answer"],
            }
        )

    teams = {}
    for team in sorted(team_counts):
        counts = team_counts[team]
        delta = counts["candidate"] - counts["baseline"]
        teams[team] = {
            "baseline": _side(counts["baseline"], counts["total"]),
            "candidate": _side(counts["candidate"], counts["total"]),
            "delta": delta,
            "regressed": -delta > tolerance,
            "right_to_wrong": counts["rw"],
            "wrong_to_right": counts["wr"],
            "mcnemar_p": mcnemar_exact_p(right_to_wrong=counts["rw"], wrong_to_right=counts["wr"]),
        }
    right_to_wrong = sum(1 for flip in flips if flip["direction"] == "right_to_wrong")
    wrong_to_right = len(flips) - right_to_wrong
    baseline_correct = sum(c["baseline"] for c in team_counts.values())
    candidate_correct = sum(c["candidate"] for c in team_counts.values())
    paired = sum(c["total"] for c in team_counts.values())
    regressed_teams = [team for team, row in teams.items() if row["regressed"]]
    return {
        "tolerance": tolerance,
        "teams": teams,
        "overall": {
            "baseline": _side(baseline_correct, paired),
            "candidate": _side(candidate_correct, paired),
            "delta": candidate_correct - baseline_correct,
        },
        "flips": flips,
        "right_to_wrong": right_to_wrong,
        "wrong_to_right": wrong_to_right,
        "mcnemar_p": mcnemar_exact_p(right_to_wrong=right_to_wrong, wrong_to_right=wrong_to_right),
        "unpaired": unpaired,
        "regressed_teams": regressed_teams,
        "regressed": bool(regressed_teams),
    }
