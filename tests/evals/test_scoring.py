"""Scoring a run and comparing two, on hand-built outcomes."""

import pytest

from evals.scoring import CaseLabel, Outcome, run_score, runs_compare

ALLOWED = {"team": ("billing", "auth"), "priority": ("P1", "P2", "P3")}
CASES = [
    CaseLabel("B1", "billing", "P1"),
    CaseLabel("B2", "billing", "P0"),  # a label the prompt cannot produce
    CaseLabel("B3", "billing", "P2"),
    CaseLabel("A1", "auth", "P1"),
    CaseLabel("A2", "auth", "P3"),
]


def _ok(ticket, team, priority, attempt=1, latency=1.0):
    return Outcome(ticket, attempt, "ok", team, priority, latency)


def test_run_score_per_team_priority_invalid_confusion_latency():
    outcomes = [
        _ok("B1", "billing", "P1", latency=1.0),
        _ok("B2", "billing", "P1", latency=2.0),
        _ok("B3", "auth", "P2", latency=3.0),
        _ok("A1", "auth", "P1", latency=4.0),
        Outcome("A2", 1, "invalid", None, None, 5.0),
    ]
    score = run_score(cases=CASES, outcomes=outcomes, allowed=ALLOWED)
    billing = score["teams"]["billing"]
    assert (billing["correct"], billing["total"]) == (2, 3)
    assert billing["accuracy"] == pytest.approx(2 / 3)
    assert billing["interval"][0] < 2 / 3 < billing["interval"][1]
    # B2's P0 is left out of priority accuracy instead of counting as a model error.
    assert (billing["priority_correct"], billing["priority_total"]) == (2, 2)
    assert billing["latency_p50"] == 2.0
    auth = score["teams"]["auth"]
    assert (auth["correct"], auth["total"], auth["invalid"]) == (1, 2, 1)
    assert auth["invalid_rate"] == 0.5
    assert score["overall"]["correct"] == 3 and score["overall"]["total"] == 5
    assert score["overall"]["latency_p95"] == pytest.approx(4.8)
    assert score["confusion"]["rows"] == ["auth", "billing"]
    assert score["confusion"]["columns"] == ["auth", "billing", "(invalid)"]
    assert score["confusion"]["counts"]["billing"] == {"auth": 1, "billing": 2, "(invalid)": 0}
    assert score["confusion"]["counts"]["auth"]["(invalid)"] == 1
    assert score["flaky"] == []


def test_errors_are_not_scored_and_repeats_use_the_majority():
    outcomes = [
        # B1: 2 of 3 right -> right, flaky
        _ok("B1", "billing", "P1", 1),
        _ok("B1", "billing", "P1", 2),
        _ok("B1", "auth", "P1", 3),
        # B3: 1 of 2 right -> not a strict majority -> wrong, flaky
        _ok("B3", "billing", "P2", 1),
        _ok("B3", "auth", "P2", 2),
        # A1: only errors -> unscored
        Outcome("A1", 1, "error"),
        Outcome("A1", 2, "error"),
        # A2: one error, one right -> right, not flaky
        Outcome("A2", 1, "error"),
        _ok("A2", "auth", "P3", 2),
    ]
    score = run_score(cases=CASES, outcomes=outcomes, allowed=ALLOWED)
    assert score["tickets"]["B1"]["correct"] is True
    assert score["tickets"]["B1"]["agreement"] == pytest.approx(2 / 3)
    assert score["tickets"]["B3"]["correct"] is False
    assert score["tickets"]["A1"]["correct"] is None and score["tickets"]["A1"]["scored"] is False
    assert score["tickets"]["A2"]["correct"] is True
    assert score["flaky"] == ["B1", "B3"]
    auth = score["teams"]["auth"]
    assert (auth["correct"], auth["total"], auth["unscored"], auth["errors"]) == (1, 1, 1, 3)
    assert score["confusion"]["counts"]["auth"]["(error)"] == 3
    assert score["overall"]["attempt_accuracy"] == pytest.approx(4 / 6)


def _score(answers):
    """answers: ticket -> predicted team (one attempt each)."""
    outcomes = [_ok(ticket, team, "P1") for ticket, team in answers.items()]
    return run_score(cases=CASES, outcomes=outcomes, allowed=ALLOWED)


def test_compare_flags_the_team_that_lost_more_than_the_tolerance():
    baseline = _score({"B1": "billing", "B2": "billing", "B3": "billing", "A1": "billing", "A2": "auth"})
    candidate = _score({"B1": "auth", "B2": "auth", "B3": "billing", "A1": "auth", "A2": "auth"})
    comparison = runs_compare(baseline=baseline, candidate=candidate, tolerance=1)
    billing = comparison["teams"]["billing"]
    assert (billing["baseline"]["correct"], billing["candidate"]["correct"], billing["delta"]) == (3, 1, -2)
    assert billing["regressed"] is True
    assert comparison["teams"]["auth"]["regressed"] is False
    assert comparison["teams"]["auth"]["delta"] == 1
    assert comparison["regressed"] is True and comparison["regressed_teams"] == ["billing"]
    assert [(f["ticket"], f["direction"]) for f in comparison["flips"]] == [
        ("A1", "wrong_to_right"),
        ("B1", "right_to_wrong"),
        ("B2", "right_to_wrong"),
    ]
    assert comparison["flips"][1]["candidate_answer"] == "auth"
    assert comparison["mcnemar_p"] == pytest.approx(1.0)  # 2 vs 1 flips: no evidence
    assert runs_compare(baseline=baseline, candidate=candidate, tolerance=2)["regressed"] is False


def test_compare_skips_unscored_tickets_as_unpaired():
    baseline = _score({"B1": "billing", "B2": "billing", "B3": "billing", "A1": "auth", "A2": "auth"})
    candidate_outcomes = [
        _ok(t, team, "P1") for t, team in {"B1": "billing", "B2": "billing", "A1": "auth", "A2": "auth"}.items()
    ]
    candidate_outcomes.append(Outcome("B3", 1, "error"))
    candidate = run_score(cases=CASES, outcomes=candidate_outcomes, allowed=ALLOWED)
    comparison = runs_compare(baseline=baseline, candidate=candidate, tolerance=0)
    assert comparison["unpaired"] == ["B3"]
    assert comparison["teams"]["billing"]["baseline"]["total"] == 2
    assert comparison["regressed"] is False
    assert comparison["flips"] == []


def test_compare_mcnemar_reflects_one_sided_flips():
    cases = [CaseLabel(f"T{i}", "billing", "P1") for i in range(8)]
    baseline = run_score(cases=cases, outcomes=[_ok(c.id, "billing", "P1") for c in cases])
    candidate = run_score(
        cases=cases,
        outcomes=[_ok(c.id, "auth", "P1") for c in cases[:6]] + [_ok(c.id, "billing", "P1") for c in cases[6:]],
    )
    comparison = runs_compare(baseline=baseline, candidate=candidate, tolerance=0)
    assert comparison["right_to_wrong"] == 6
    assert comparison["mcnemar_p"] == pytest.approx(2 / 64)
    assert comparison["teams"]["billing"]["mcnemar_p"] == pytest.approx(2 / 64)
