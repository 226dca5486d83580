"""The offline triage model: prompt reading, accuracy on two ticket sets, noise, lexicon edits."""

from __future__ import annotations

import collections
import json
import random
import re
import shutil
from pathlib import Path

import pytest

from managed_agents import tickets
from managed_agents.emulator import model
from promptctl.tutorial import TEAMS, TICKETS_FILE, V1_PROMPT, V2_PROMPT

SHARED_TICKETS = TICKETS_FILE
REALISTIC_TICKETS = Path(__file__).resolve().parent / "data" / "realistic_tickets.jsonl"
V2_TRIGGER = re.compile(r"\bAPI usage\b|\brate[ -]limits?\b|\bquotas?\b|\brequest volume\b", re.IGNORECASE)


def load_tickets(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def ticket_text(ticket: dict) -> str:
    return tickets.ticket_text(subject=ticket["subject"], body=ticket["body"])


def correct_per_team(prompt: str, tickets: list[dict]) -> collections.Counter:
    correct: collections.Counter = collections.Counter({team: 0 for team in TEAMS})
    for ticket in tickets:
        if model.triage_verdict(prompt, ticket_text(ticket))["team"] == ticket["team"]:
            correct[ticket["team"]] += 1
    return correct


TICKET_SETS = pytest.mark.parametrize("path", [SHARED_TICKETS, REALISTIC_TICKETS], ids=["shared", "realistic"])


# --- accuracy ---------------------------------------------------------------------------------------------


@TICKET_SETS
def test_v1_routes_at_least_nine_in_ten_tickets_right(path):
    tickets = load_tickets(path)
    correct = correct_per_team(V1_PROMPT, tickets)
    assert sum(correct.values()) >= 0.9 * len(tickets), dict(correct)  # 18 of 20 on the shared set


@TICKET_SETS
def test_v2_routing_rule_costs_billing_and_no_other_team(path):
    tickets = load_tickets(path)
    before = correct_per_team(V1_PROMPT, tickets)
    after = correct_per_team(V2_PROMPT, tickets)
    assert after["billing"] < before["billing"], (dict(before), dict(after))
    for team in ("auth", "api-platform", "dashboard"):
        assert after[team] >= before[team], (team, dict(before), dict(after))


def test_realistic_set_is_varied_enough_to_mean_something():
    tickets = load_tickets(REALISTIC_TICKETS)
    per_team = collections.Counter(ticket["team"] for ticket in tickets)
    assert len(tickets) >= 40 and all(per_team[team] >= 10 for team in TEAMS), per_team
    assert len({ticket["id"] for ticket in tickets}) == len(tickets)
    assert all(set(ticket) == {"id", "subject", "body", "team", "priority"} for ticket in tickets)
    billing_about_usage = [t for t in tickets if t["team"] == "billing" and V2_TRIGGER.search(ticket_text(t))]
    others_about_rate_limits = [
        t for t in tickets if t["team"] != "billing" and re.search(r"rate[ -]limit|429|throttl", ticket_text(t), re.I)
    ]
    assert len(billing_about_usage) >= 3
    assert len(others_about_rate_limits) >= 3
    shared_texts = {ticket_text(ticket) for ticket in load_tickets(SHARED_TICKETS)}
    assert not shared_texts & {ticket_text(ticket) for ticket in tickets}


def test_billing_disputes_that_mention_rate_limits_stay_billing_under_v1():
    tickets = [
        t for t in load_tickets(REALISTIC_TICKETS) if t["team"] == "billing" and V2_TRIGGER.search(ticket_text(t))
    ]
    routed = [model.triage_verdict(V1_PROMPT, ticket_text(t))["team"] for t in tickets]
    assert routed == ["billing"] * len(tickets)
    routed_v2 = [model.triage_verdict(V2_PROMPT, ticket_text(t))["team"] for t in tickets]
    assert routed_v2 == ["api-platform"] * len(tickets)


# --- reading the prompt -----------------------------------------------------------------------------------


def test_reply_is_exactly_one_line_of_json_in_template_order():
    reply = model.triage_reply(V1_PROMPT, "Subject: Invoice wrong\n\nWe were charged twice on the invoice.")
    assert "\n" not in reply
    assert list(json.loads(reply)) == ["team", "priority"]
    assert json.loads(reply)["team"] == "billing"


def test_labels_come_from_any_template_field():
    prompt = 'Answer {"queue": "<dashboard|auth>", "severity": "<low|high>", "lang": "<en|de>"} only.'
    verdict = model.triage_verdict(prompt, "Subject: Invoice\n\nRefund our invoice please, also the chart is blank.")
    assert list(verdict) == ["queue", "severity", "lang"]
    assert verdict["queue"] == "dashboard"  # billing is not allowed; the best allowed label wins
    assert verdict["severity"] in ("low", "high")
    assert verdict["lang"] == "en"


def test_routing_rules_are_general_case_and_plural_insensitive():
    prompt = V1_PROMPT + "\nrouting rule: if a ticket mentions Chargeback, refunds or Dark Modes, route to auth."
    assert model.triage_verdict(prompt, "Subject: x\n\nWe got a chargebacks notice.")["team"] == "auth"
    assert model.triage_verdict(prompt, "Subject: x\n\nI want a REFUND for the invoice.")["team"] == "auth"
    assert model.triage_verdict(prompt, "Subject: x\n\nthe dark mode toggle fails")["team"] == "auth"
    assert model.triage_verdict(prompt, "Subject: x\n\nthe chart widget is blank")["team"] == "dashboard"


def test_a_rule_naming_a_label_the_template_cannot_produce_is_ignored():
    prompt = V1_PROMPT + "\nIf the ticket mentions invoices, route to finance."
    assert model.triage_verdict(prompt, "Subject: x\n\nThe invoice is wrong.")["team"] == "billing"


def test_priority_rules_and_allowed_priority_labels():
    with_p0 = V1_PROMPT.replace("<P1|P2|P3>", "<P0|P1|P2|P3>")
    outage = "Subject: Total outage\n\nEvery request fails with 500, production is down for all customers."
    assert model.triage_verdict(with_p0, outage)["priority"] == "P0"
    assert model.triage_verdict(V1_PROMPT, outage)["priority"] == "P1"  # P0 is not allowed: nearest allowed
    minor = "Subject: Small thing\n\nMinor cosmetic issue in the chart legend, whenever you get to it."
    assert model.triage_verdict(V1_PROMPT, minor)["priority"] == "P3"
    ruled = V1_PROMPT + "\nIf the ticket mentions legends, set priority P1."
    assert model.triage_verdict(ruled, minor)["priority"] == "P1"


def test_without_a_template_the_lexicon_teams_are_used():
    verdict = model.triage_verdict("You triage tickets.", "Subject: SSO\n\nSAML login loops.")
    assert verdict == {"team": "auth", "priority": verdict["priority"]}


# --- noise and malformed replies --------------------------------------------------------------------------


def test_noise_picks_the_second_best_team_reproducibly():
    text = "Subject: Refund\n\nRefund the invoice; also the webhook endpoint returns 500."
    assert model.triage_verdict(V1_PROMPT, text)["team"] == "billing"
    assert model.triage_verdict(V1_PROMPT, text, noise=1.0)["team"] == "api-platform"

    def sample(seed: int) -> list[str]:
        dice = random.Random(seed)
        return [model.triage_verdict(V1_PROMPT, text, noise=0.3, dice=dice)["team"] for _ in range(200)]

    first = sample(5)
    assert first == sample(5)
    share = first.count("api-platform") / len(first)
    assert 0.2 < share < 0.4


def test_malformed_replies_never_parse_as_a_verdict():
    dice = random.Random(1)
    replies = {model.malformed_reply(V1_PROMPT, "Subject: Refund\n\nRefund please.", dice) for _ in range(30)}
    assert len(replies) == 3
    for reply in replies:
        with pytest.raises(ValueError):
            json.loads(reply)


# --- the lexicon ------------------------------------------------------------------------------------------


def test_lexicon_edits_take_effect_without_restart(tmp_path, monkeypatch):
    edited = tmp_path / "lexicon.json"
    shutil.copy(model.LEXICON_PATH, edited)
    monkeypatch.setattr(model, "LEXICON_PATH", edited)
    text = "Subject: Grumbling gizmo\n\nThe gizmo grumbles."
    assert model.triage_verdict(V1_PROMPT, text)["team"] == "billing"  # no evidence: first listed label

    data = json.loads(edited.read_text())
    data["teams"]["dashboard"]["gizmo*"] = 4
    edited.write_text(json.dumps(data))
    assert model.triage_verdict(V1_PROMPT, text)["team"] == "dashboard"


def test_cue_matching_rules():
    cue = model.Cue.parse("charg*", 1)
    assert model.Text("we were charged").has(cue) and model.Text("charges apply").has(cue)
    assert model.Text("two quotas").has(model.Cue.parse("quota", 1))
    assert model.Text("Policies changed").has(model.Cue.parse("policy", 1))
    assert model.Text("we paid $1,200.50 today").has(model.Cue.parse("currency_amount", 1))
    assert not model.Text("rate of change").has(model.Cue.parse("rate limit", 1))


def _word_windows(text: str, size: int) -> set[str]:
    tokens = re.findall(r"[a-z0-9]+", text.lower())
    return {" ".join(tokens[start : start + size]) for start in range(len(tokens) - size + 1)}


def test_model_and_lexicon_hold_no_ticket_ids_or_ticket_sentences():
    sources = (model.LEXICON_PATH.read_text() + Path(model.__file__).read_text()).lower()
    source_windows = _word_windows(sources, 5)
    for path in (SHARED_TICKETS, REALISTIC_TICKETS):
        for ticket in load_tickets(path):
            assert ticket["id"].lower() not in sources
            copied = _word_windows(ticket["subject"] + " . " + ticket["body"], 5) & source_windows
            assert not copied, (ticket["id"], copied)
