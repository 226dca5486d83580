"""Every message in the web speaks the web (issue 14, house style 9): buttons and links, never CLI flags.

The services raise structured refusals (``DomainError`` with ``code``,
``fields`` and a ``Fix`` worded per door); each door words them its own way.
Three halves:

- **Pages**: with the data of a small story (the tutorial agent in production
  through the evals gate, v2 scored and compared, a promotion pending, an API
  key, a personal token, one triage call), every admin changelist, add, change
  and history page of every registered model, and the custom views (run
  detail, comparison, diff, timeline, the change request's action pages), are
  rendered as admin and scanned for CLI flags and ``promptctl`` commands.
- **Refusals**: each refusal the admin can meet is raised through the real
  services and worded by the admin's own helper (``refusal_text``), and some
  are met by filling the admin's forms in Chromium and clicking submit; none
  may name a flag or a command.
- **The CLI keeps its words**: each refusal code's ``str()`` (what the CLI and
  the stdlib client print) still names the flag or command to type, and the
  API's error body carries both wordings, the code and the fields.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import NoReverseMatch, reverse

from evals import selectors as eval_selectors
from evals import services as eval_services
from evals.models import Comparison
from managed_agents.errors import DomainError, Fix
from promptctl import selectors as change_selectors
from promptctl import services as change_services
from promptctl.admin.mixins import refusal_text
from promptctl.api_errors import refusal_body
from promptctl.models import ChangeRequest
from tests.browser_support import admin_login
from tests.promptctl.api_support import caller_for
from tests.triage.support import PASSWORD, V2, Api, People, ProductionAgent, eval_run_now, gate_tickets_jsonl, ticket
from triage import services as triage_services
from triage.models import ApiKey, RoutingPolicy

# A flag as the CLI takes it (` --evidence`, `(--to`), and a command of the operator CLI.
FLAG = re.compile(r"(?:^|[\s(\[`'\"])--[a-z][a-z-]*")
COMMAND = re.compile(
    r"\bpromptctl (?:agent|apikey|audit|change|db|eval|testset|token|user|version|webhook)\b|manage\.py"
)
SCANNED_ATTRIBUTES = ("title", "placeholder", "aria-label", "alt")


class _Text(HTMLParser):
    """The words a person reads on a page: text outside script and style, and a few attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skipping += 1
        for name, value in attrs:
            if name in SCANNED_ATTRIBUTES and value:
                self.parts.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def cli_words(text: str) -> list[str]:
    """The CLI flags and commands in ``text`` (empty when it speaks the web)."""
    return [match.group(0).strip() for pattern in (FLAG, COMMAND) for match in pattern.finditer(text)]


def page_words(html: str) -> list[str]:
    parser = _Text()
    parser.feed(html)
    return cli_words("\n".join(parser.parts))


def test_the_scanner_finds_flags_and_commands_and_nothing_else():
    assert cli_words("file it with --evidence comparison:3") == ["--evidence"]
    assert cli_words("(`promptctl eval compare --agent x`)") == ["--agent", "promptctl eval"]
    assert cli_words("Select an agent: ---------") == []
    assert cli_words("promptctl stores only its SHA-256") == []
    assert page_words("<p>Press <b>Compare</b></p><script>x = '--evidence'</script>") == []
    assert page_words('<a title="needs --to">x</a>') == ["--to"]


# --- the story -----------------------------------------------------------------------------------


@dataclass
class Story:
    people: People
    production: ProductionAgent
    v2: int
    comparison: Comparison
    change: ChangeRequest
    filing_refusal: DomainError | None


@pytest.fixture
def story(db, emulator, settings) -> Story:
    """The tutorial agent in production, v2 scored and compared, its promotion filed; a key, a token, a call."""
    settings.PROMPTCTL_RATE_LIMITER = "off"
    settings.PROMPTCTL_BACKOFF_BASE = 0.01
    people = People()
    production = ProductionAgent(people)
    agent = production.agent
    v2 = production.new_version(V2)
    production.runs[v2] = eval_run_now(
        version=agent.versions.get(number=v2), testset_version=production.testset_version, actor=people.requester
    )
    comparison = eval_services.comparison_for_versions(agent=agent, baseline_number=production.v1, candidate_number=v2)
    filing_refusal = None
    try:  # a regressed comparison without an accept reason may be refused at filing (or only at apply)
        change = change_services.change_request_create(
            agent=agent,
            kind="promote",
            target_number=v2,
            reason="v2 routes usage tickets",
            actor=people.requester,
            evidence_ref=f"comparison:{comparison.pk}",
        )
    except DomainError as refusal:
        filing_refusal = refusal
        change = change_services.change_request_create(
            agent=agent,
            kind="promote",
            target_number=v2,
            reason="v2 routes usage tickets",
            actor=people.requester,
            evidence_ref=f"comparison:{comparison.pk}",
            accept_regression_reason="billing is expected to move",
        )
    key = triage_services.api_key_create(name="helpdesk", actor=people.admin, all_agents=True)
    change_services.token_create(user=people.requester, actor=people.requester, name="laptop")
    answered = Api(key.secret).post("/triage", ticket(0))
    assert answered.status_code == 200, answered.content
    return Story(people, production, v2, comparison, change, filing_refusal)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _admin_pages(story: Story) -> list[str]:
    """Every changelist, add, change and history page of every registered model, and the custom views."""
    urls = [reverse("admin:index")]
    for model in admin.site._registry:
        prefix = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        urls.append(reverse(f"{prefix}_changelist"))
        urls.append(reverse(f"{prefix}_add"))
        first = model._default_manager.order_by("-pk").first()
        if first is not None:
            urls.append(reverse(f"{prefix}_change", args=[first.pk]))
            try:
                urls.append(reverse(f"{prefix}_history", args=[first.pk]))
            except NoReverseMatch:
                pass
    agent = story.production.agent
    version = agent.versions.get(number=story.v2)
    urls += [
        reverse("admin:promptctl_agent_timeline", args=[agent.pk]),
        reverse("admin:promptctl_agentversion_diff", args=[version.pk]) + f"?against={story.production.v1}",
        reverse("admin:evals_comparison_change", args=[story.comparison.pk]),
        reverse("admin:promptctl_changerequest_change", args=[story.change.pk]),
    ]
    urls += [reverse("admin:evals_evalrun_change", args=[run.pk]) for run in story.production.runs.values()]
    for action in ("approve", "reject", "apply", "withdraw"):
        try:
            urls.append(reverse("admin:promptctl_changerequest_action", args=[story.change.pk, action]))
        except NoReverseMatch:
            pass
    return list(dict.fromkeys(urls))


def _scan(user, urls: list[str]) -> tuple[int, dict[str, list[str]]]:
    """How many of ``urls`` rendered for ``user``, and the CLI words on each page that has any."""
    client = _client(user)
    rendered, found = 0, {}
    for url in urls:
        response = client.get(url)
        if response.status_code != 200:
            assert response.status_code in (302, 403, 404, 405), (url, response.status_code)
            continue
        rendered += 1
        words = page_words(response.content.decode())
        if words:
            found[url] = sorted(set(words))
    return rendered, found


def test_no_admin_page_speaks_cli(story):
    rendered, found = _scan(story.people.admin, _admin_pages(story))
    assert rendered >= 40, f"only {rendered} admin pages rendered"
    assert not found, f"admin pages that speak CLI: {found}"


def test_the_pages_of_requesters_and_reviewers_speak_the_web_too(story):
    """They see other buttons and refusals than an admin: the review flow's pages, as each of them."""
    pages = [url for url in _admin_pages(story) if "/history/" not in url and not url.endswith("/add/")]
    for user in (story.people.requester, story.people.reviewer):
        rendered, found = _scan(user, pages)
        assert rendered >= 10, (user.username, rendered)
        assert not found, (user.username, found)


# --- the refusals the admin can meet --------------------------------------------------------------


def _refused(call: Callable[[], Any]) -> DomainError:
    with pytest.raises(DomainError) as caught:
        call()
    return caught.value


def _refusals(story: Story) -> dict[str, DomainError]:
    """One refusal per kind the admin's doors can meet, raised through the real services."""
    people, production = story.people, story.production
    agent, rita, ada = production.agent, people.requester, people.admin

    def file(**given):
        arguments = {"agent": agent, "kind": "promote", "target_number": story.v2, "reason": "r", "actor": rita}
        return lambda: change_services.change_request_create(**{**arguments, **given})

    unfinished = eval_services.eval_run_start(
        agent_version=agent.versions.get(number=story.v2), testset_version=production.testset_version, actor=rita
    )
    v1_run = production.runs[production.v1]
    v2_run = production.runs[story.v2]
    v2_again = eval_run_now(version=v2_run.agent_version, testset_version=production.testset_version, actor=rita)
    off_baseline = eval_services.comparison_create(baseline_run=v2_run, candidate_run=v2_again)
    orphan = eval_services.testset_import(name="orphan-set", data=_jsonl(), filename="o.jsonl", actor=ada).testset
    # A second agent with no production pin yet, whose first run has not finished.
    newcomer = change_services.agent_create(name="newcomer", model="claude-sonnet-4-6", system_prompt=V2, actor=rita)
    newcomer_set = eval_services.testset_import(
        name="newcomer-gate", data=_jsonl(), filename="n.jsonl", agent=newcomer, gating=True, actor=ada
    ).version
    newcomer_run = eval_services.eval_run_start(
        agent_version=newcomer.versions.get(), testset_version=newcomer_set, actor=rita
    )
    policy = RoutingPolicy.objects.get(agent=agent)
    policy.is_default = not policy.is_default
    refusals = {
        "evidence_missing": _refused(file(channel="production")),
        "evidence_unreadable": _refused(file(evidence_ref="the good one")),
        "evidence_needs_comparison": _refused(file(evidence_ref=f"run:{v2_run.pk}")),
        "evidence_not_found": _refused(file(evidence_ref="comparison:999999")),
        "evidence_wrong_baseline": _refused(file(evidence_ref=f"comparison:{off_baseline.pk}")),
        "evidence_run_unfinished": _refused(
            lambda: change_services.change_request_create(
                agent=newcomer,
                kind="promote",
                target_number=newcomer.latest_version_number,
                reason="first",
                actor=rita,
                evidence_ref=f"run:{newcomer_run.pk}",
            )
        ),
        "target_version_missing": _refused(file(target_number=None)),
        "version_not_found": _refused(file(target_number=999999)),
        "canary_percent_out_of_range": _refused(file(kind="canary", channel="staging", canary_percent=None)),
        "canary_percent_not_applicable": _refused(file(channel="staging", canary_percent=5)),
        "route_target_not_production": _refused(file(kind="route", target_number=story.v2)),
        "permission_refused": _refused(
            lambda: change_services.agent_policy_update(agent=agent, actor=rita, required_approvals=1)
        ),
        "api_key_scope_both": _refused(
            lambda: triage_services.api_key_create(name="k2", actor=ada, agent_names=[agent.name], all_agents=True)
        ),
        "api_key_scope_missing": _refused(lambda: triage_services.api_key_create(name="k3", actor=ada)),
        "agent_not_found": _refused(lambda: triage_services.api_key_create(name="k4", actor=ada, agent_names=["nope"])),
        "token_for_a_person": _refused(
            lambda: change_services.token_create(user=people.reviewer, actor=ada, name="for-victor")
        ),
        "default_agent_needs_change_request": _refused(
            lambda: triage_services.routing_policy_save(policy=policy, actor=ada)
        ),
        "run_unfinished": _refused(
            lambda: eval_services.comparison_create(baseline_run=v1_run, candidate_run=unfinished)
        ),
        "testset_name_missing": _refused(
            lambda: eval_services.testset_import(name="", data=_jsonl(), filename="t.jsonl", actor=ada)
        ),
        "testset_without_agent": _refused(lambda: eval_services.testset_gating_set(testset=orphan, actor=ada)),
        "diff_version_not_found": _refused(
            lambda: change_selectors.version_diff(agent=agent, left_number=999999, right_number=story.v2)
        ),
        "comparison_not_found": _refused(lambda: eval_selectors.comparison_get(comparison_id=999999)),
    }
    if story.filing_refusal is not None:
        refusals["regression_not_accepted"] = story.filing_refusal
    elif story.comparison.regressed:
        change_services.change_request_approve(change=story.change, reviewer=people.reviewer)
        refusals["regression_not_accepted"] = _refused(
            lambda: change_services.change_request_apply(change=story.change, actor=people.reviewer)
        )
    return refusals


def _jsonl() -> str:
    return gate_tickets_jsonl()


def test_every_refusal_the_admin_meets_is_worded_for_the_web(story):
    refusals = _refusals(story)
    assert len(refusals) >= 20
    spoken = {name: cli_words(str(refusal_text(refusal, prefix="Refused: "))) for name, refusal in refusals.items()}
    assert not {name: words for name, words in spoken.items() if words}, "refusals worded for the CLI on the web"
    for name, refusal in refusals.items():
        assert refusal.web_message().strip(), name
        assert refusal.error_code, name


# The flag or command each refusal code's CLI wording must keep (what the CLI tells people to type).
CLI_KEEPS = {
    "evidence_missing": "--evidence",
    "evidence_unreadable": "--evidence",
    "evidence_needs_comparison": "promptctl eval compare",
    "evidence_not_found": "promptctl eval compare",
    "evidence_wrong_baseline": "--baseline",
    "evidence_run_unfinished": "promptctl eval show",
    "target_version_missing": "--to",
    "version_not_found": "promptctl agent sync",
    "canary_percent_out_of_range": "--percent",
    "canary_percent_not_applicable": "--percent",
    "route_target_not_production": "--to",
    "permission_refused": "promptctl user add",
    "api_key_scope_both": "--all-agents",
    "api_key_scope_missing": "--agent NAME",
    "agent_not_found": "promptctl agent list",
    "token_for_a_person": "--role bot",
    "default_agent_needs_change_request": "--kind route",
    "run_unfinished": "promptctl eval show",
    "testset_name_missing": "--name",
    "testset_without_agent": "--agent NAME",
    "diff_version_not_found": "promptctl version list",
    "comparison_not_found": "promptctl eval compare",
    "regression_not_accepted": "--accept-regression",
}


def test_each_refusal_code_keeps_its_cli_wording(story):
    refusals = _refusals(story)
    checked = 0
    for name, refusal in refusals.items():
        if name not in CLI_KEEPS:
            continue
        checked += 1
        cli = str(refusal)
        assert CLI_KEEPS[name] in cli, (name, cli)
        assert CLI_KEEPS[name] not in refusal.web_message(), (name, refusal.web_message())
        assert refusal.fix is not None and refusal.fix.cli in cli, name
    assert checked >= 21


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_admin_forms_show_the_web_wording(story, browser_page):
    """Refusals met by filling the admin's own forms in Chromium and clicking submit come back in the web's words.

    The story is made before the browser starts (Playwright's loop would refuse its session calls).
    """
    agent = story.production.agent
    filed_before = ChangeRequest.objects.count()
    rita = browser_page()
    admin_login(rita, username=story.people.requester.username, password=PASSWORD)
    rita.goto(reverse("admin:promptctl_changerequest_add") + f"?agent={agent.pk}")
    rita.select_option("#id_kind", "promote")
    rita.fill("#id_channel", "production")
    rita.select_option("#id_target_version", str(story.v2))
    rita.fill("#id_reason", "r")
    assert rita.input_value("#id_evidence") == ""  # no evidence picked
    rita.click("#file-request")
    rita.wait_for_selector("#refusal")
    refusal = rita.inner_text("#refusal")
    assert "must carry eval evidence" in refusal and "Start run" in refusal
    assert page_words(rita.content()) == []
    assert rita.input_value("#id_reason") == "r"  # the form keeps what she typed
    assert ChangeRequest.objects.count() == filed_before
    # The fix is a link (not escaped text), and it leads to the page that starts a run.
    rita.click("#refusal a:has-text('Open it')")
    rita.wait_for_url(f"**{reverse('admin:evals_evalrun_add')}")
    assert page_words(rita.content()) == []

    ada = browser_page()
    admin_login(ada, username=story.people.admin.username, password=PASSWORD)
    ada.goto(reverse("admin:triage_apikey_add"))
    ada.fill("#id_name", "nobody")
    ada.click("input[type=submit][value='Create key']")
    ada.wait_for_selector(".errorlist.nonfield")
    assert "tick All agents" in ada.inner_text(".errorlist.nonfield")
    assert page_words(ada.content()) == []
    assert ada.locator("#api-key-secret").count() == 0
    assert not ApiKey.objects.filter(name="nobody").exists()


def test_a_refusal_keeps_its_structure_and_the_api_returns_both_wordings(story):
    fix = Fix(cli="Give it with --evidence.", web="Pick the evidence.", link=("admin:evals_evalrun_add", ()))
    refusal = DomainError("Refused: no evidence.", code="evidence_missing", fields=("evidence",), fix=fix)
    assert str(refusal) == "Refused: no evidence. Give it with --evidence."
    assert refusal.web_message() == "Refused: no evidence. Pick the evidence."
    copied = pickle.loads(pickle.dumps(refusal))
    assert (str(copied), copied.code, copied.fields, copied.fix) == (
        str(refusal),
        "evidence_missing",
        ("evidence",),
        fix,
    )
    shown = str(refusal_text(refusal))
    assert f'<a href="{reverse("admin:evals_evalrun_add")}">' in shown and "--evidence" not in shown
    assert DomainError("plain").error_code == "domain_error" and DomainError("plain").web_message() == "plain"
    body = refusal_body(refusal)
    assert body["detail"] == body["message"] == str(refusal)
    assert body["fix"] == {"cli": fix.cli, "web": fix.web, "link": reverse("admin:evals_evalrun_add")}

    rita = caller_for(story.people.requester)
    answered = rita.post("/changes", {"agent": story.production.agent.name, "kind": "promote", "reason": "x"})
    assert answered.status_code == 400
    error = answered.json()
    assert error["code"] == "target_version_missing" and error["fields"] == ["target_version"]
    assert "--to VERSION" in error["detail"] and "--to" not in error["web_message"]
    assert error["fix"]["web"] in error["web_message"]
