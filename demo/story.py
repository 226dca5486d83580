"""The tutorial, played through promptctl's own services and workers.

Each step calls the same services the admin, CLI and API call; eval runs are
executed by the Celery worker process the launcher started. A refusal that the
story expects (the regression gate) is caught and shown; any other refusal
stops the story with its message.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings

from evals import selectors as eval_selectors
from evals import services as eval_services
from evals.models import EvalRun
from managed_agents import gateway
from promptctl import config_files, selectors, services
from promptctl.errors import DomainError
from promptctl.models import Agent, AgentVersion, ChangeRequest
from promptctl.tutorial import TICKETS_FILE, V1_PROMPT, V2_PROMPT

AGENT_NAME = "ticket-triage"
DEPLOYMENT_NAME = "nightly-digest"
UPGRADE_MODEL = "claude-opus-4-7"
TESTSET_NAME = "support-tickets"
DEMO_USERS = (
    ("alice", "requester", "alice-demo-pass"),
    ("bob", "reviewer", "bob-demo-pass"),
    ("carol", "reviewer", "carol-demo-pass"),
    ("admin", "admin", "admin-demo-pass"),
)
TOKEN_DAYS = 7  # long enough to try the client after the demo; short, since the secrets are printed


class Story:
    def __init__(
        self,
        *,
        web_url: str,
        write: Callable[[str], None],
        run_timeout: float = 600.0,
        goalposts: bool = True,
        model_upgrade: bool = True,
    ) -> None:
        self.web_url = web_url.rstrip("/")
        self.goalposts = goalposts  # play the refused gating-set swap (python -m redteam plays it as an attack)
        # The closing model upgrade (a v3 in production); python -m redteam attacks the tutorial's v1/v2 state instead.
        self.model_upgrade = model_upgrade
        self.write = write
        self.run_timeout = run_timeout
        self.users: dict[str, Any] = {}
        self.tokens: dict[str, str] = {}
        self.runs: list[Any] = []

    # --- output ---------------------------------------------------------------

    def step(self, number: int, title: str) -> None:
        self.write("")
        self.write(f"== {number}. {title}")

    def say(self, text: str = "") -> None:
        self.write(f"   {text}" if text else "")

    # --- the tutorial ------------------------------------------------------------

    def play(self) -> None:

        self.step(0, "Users and roles")
        for username, role, password in DEMO_USERS:
            user = self.users[username] = services.user_create(username=username, role=role, password=password)
            # Each person makes their own token (as in the admin's Personal tokens): the client acts as its owner.
            issued = services.token_create(user=user, actor=user, name="demo", expires_in_days=TOKEN_DAYS)
            self.tokens[username] = issued.secret
            self.say(f"{username:6} {role:9} password: {password:16} token: {issued.secret}")
        alice, bob, carol = self.users["alice"], self.users["bob"], self.users["carol"]

        self.step(1, f"alice creates the {AGENT_NAME} agent with the v1 prompt; admin imports its gating test set")
        agent = services.agent_create(name=AGENT_NAME, model="claude-sonnet-4-6", system_prompt=V1_PROMPT, actor=alice)
        v1 = agent.versions.get()
        self.say(f"agent {agent.name} = remote {agent.remote_id}, environment {agent.environment_id}")
        self.say(f"version {v1.number} recorded (config sha256 {v1.config_sha256[:12]}…)")
        imported = eval_services.testset_import(
            name=TESTSET_NAME,
            data=TICKETS_FILE.read_bytes(),
            filename=TICKETS_FILE.name,
            agent=agent,
            gating=True,
            actor=self.users["admin"],  # choosing a gating set changes how promotions are judged: admins only
        )
        testset_version = imported.version
        self.say(
            f"test set {TESTSET_NAME} v{testset_version.number}: {testset_version.case_count} tickets, "
            f"content {testset_version.content_hash[:12]}…"
        )
        for warning in testset_version.label_warnings:
            self.say(f"warning: {warning.get('message', warning)}")

        self.step(2, "score v1; alice requests promotion of v1 to production (and the API default), bob approves")
        run_v1 = self.run_and_wait(agent_version=v1, testset_version=testset_version, actor=alice)
        change = services.change_request_create(
            agent=agent,
            kind="promote",
            target_number=v1.number,
            reason="First production version (tutorial v1).",
            actor=alice,
            evidence_ref=f"run:{run_v1.pk}",
        )
        self.say(f"change request #{change.pk}: promote v{v1.number} with evidence run:{run_v1.pk}")
        services.change_request_approve(change=change, reviewer=bob, comment="v1 scores well on every team.")
        self.say("bob approved")
        services.change_request_apply(change=change, actor=alice)
        self.say(f"applied: production is v{self.production_number(agent)}")
        digest = self.deployment_bind(agent=agent, version=v1.number)
        route = services.change_request_create(
            agent=agent,
            kind="route",
            target_number=None,
            reason="Serve POST /api/v1/triage with the tutorial agent.",
            actor=alice,
        )
        services.change_request_approve(change=route, reviewer=bob, comment="Yes, make it the default.")
        services.change_request_apply(change=route, actor=alice)
        self.say(
            f"change request #{route.pk}: {agent.name} is the triage API's default agent (filed by alice, bob approved)"
        )

        self.step(3, "alice creates v2 with the routing rule, scores it and compares against production")
        v2 = services.version_create(agent=agent, system_prompt=V2_PROMPT, actor=alice)
        self.say(f"version {v2.number} recorded (config sha256 {v2.config_sha256[:12]}…)")
        run_v2 = self.run_and_wait(agent_version=v2, testset_version=testset_version, actor=alice)
        comparison = eval_services.comparison_create(baseline_run=run_v1, candidate_run=run_v2, actor=alice)
        self.show_comparison(eval_selectors.comparison_summary(comparison=comparison))

        self.step(4, "alice requests promotion of v2: the regression gate refuses at filing; she re-files accepting it")
        try:
            services.change_request_create(
                agent=agent,
                kind="promote",
                target_number=v2.number,
                reason="Route usage questions to api-platform.",
                actor=alice,
                evidence_ref=f"comparison:{comparison.pk}",
            )
        except DomainError as refusal:
            self.say("REFUSED: " + str(refusal).removeprefix("Refused: "))
        else:
            raise DomainError("The regression gate let a regressed promotion be filed; the demo stops here.")
        accepted = services.change_request_create(
            agent=agent,
            kind="promote",
            target_number=v2.number,
            reason="Route usage questions to api-platform.",
            actor=alice,
            evidence_ref=f"comparison:{comparison.pk}",
            accept_regression_reason="Billing will re-route misrouted tickets by hand this week.",
        )
        accepted.refresh_from_db()
        self.say(f"change request #{accepted.pk} accepts the regression: needs {accepted.approvals_required} approvals")
        services.change_request_approve(change=accepted, reviewer=bob, comment="Accepting, with the manual re-route.")
        services.change_request_approve(
            change=accepted, reviewer=carol, comment="Agreed; roll back if billing complains."
        )
        self.say("bob and carol approved")
        services.change_request_apply(change=accepted, actor=alice)
        self.say(f"applied: production is v{self.production_number(agent)}")
        self.show_deployment(digest, "follows production")

        self.step(5, "billing complains: alice requests a rollback to v1, bob approves, alice applies")
        rollback = services.change_request_create(
            agent=agent,
            kind="rollback",
            target_number=v1.number,
            reason="Billing tickets misrouted under v2.",
            actor=alice,
        )
        services.change_request_approve(change=rollback, reviewer=bob, comment="Roll back.")
        services.change_request_apply(change=rollback, actor=alice)
        self.say(f"applied: production is v{self.production_number(agent)} again")
        self.show_deployment(digest, "followed the rollback")
        verification = selectors.audit_chain_verify()
        self.say(verification.message)
        if not verification.ok:
            raise DomainError("The audit chain does not verify.")

        step = 6
        if self.goalposts:
            self.step(step, "the goalposts move: v2 is approved again, then billing's tickets leave the gating set")
            self.goalposts_moved(agent=agent, v2=v2, comparison=comparison)
            step += 1

        if self.model_upgrade:
            self.step(
                step, "alice upgrades the model in the agent's config file: scored, compared and promoted like a prompt"
            )
            self.upgrade_model(agent=agent, deployment_id=digest)
            step += 1

        self.step(step, "Final status")
        self.show_status(agent)

    def upgrade_model(self, *, agent: Agent, deployment_id: str) -> None:
        """Versions as code: export production's configuration, change the model, and take the same gate."""
        alice, bob = self.users["alice"], self.users["bob"]
        production = selectors.pins_for_agent(agent=agent)["production"].version
        exported = selectors.version_config_export(agent=agent, number=production.number)
        path = Path(settings.VAR_DIR) / "demo" / f"{agent.name}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(exported["config_file"].replace(f'id = "{production.model}"', f'id = "{UPGRADE_MODEL}"'))
        self.say(f"alice exports v{production.number}'s configuration to {path} and sets the model to {UPGRADE_MODEL}")
        upgraded = services.version_create(agent=agent, config=config_files.config_file_read(path), actor=alice)
        diff = selectors.version_diff(agent=agent, left_number=production.number, right_number=upgraded.number)
        self.say(f"version {upgraded.number} recorded from the file; its diff against v{production.number}:")
        for line in diff.lines():
            self.say(f"  {line}")
        gating = eval_selectors.testset_version_latest(testset=eval_selectors.testset_gating_for(agent=agent))
        baseline = self.run_and_wait(agent_version=production, testset_version=gating, actor=alice)
        candidate = self.run_and_wait(agent_version=upgraded, testset_version=gating, actor=alice)
        comparison = eval_services.comparison_create(baseline_run=baseline, candidate_run=candidate, actor=alice)
        self.show_comparison(eval_selectors.comparison_summary(comparison=comparison))
        change = services.change_request_create(
            agent=agent,
            kind="promote",
            target_number=upgraded.number,
            reason=f"Model upgrade to {UPGRADE_MODEL}.",
            actor=alice,
            evidence_ref=f"comparison:{comparison.pk}",
        )
        services.change_request_approve(change=change, reviewer=bob, comment="Same routing on every team; upgrade.")
        services.change_request_apply(change=change, actor=alice)
        self.say(
            f"change request #{change.pk} approved by bob and applied: production is v{self.production_number(agent)}"
        )
        self.show_deployment(deployment_id, "follows the model upgrade")

    def goalposts_moved(self, *, agent: Agent, v2: AgentVersion, comparison: Any) -> None:
        """A gating set trimmed after the approval makes the approved request stale: refused, and the reviewer told."""
        alice, bob, carol, admin = (self.users[name] for name in ("alice", "bob", "carol", "admin"))
        again = services.change_request_create(
            agent=agent,
            kind="promote",
            target_number=v2.number,
            reason="Billing now re-routes by hand; try v2 again.",
            actor=alice,
            evidence_ref=f"comparison:{comparison.pk}",
            accept_regression_reason="Billing re-routes misrouted tickets by hand.",
        )
        services.change_request_approve(change=again, reviewer=bob, comment="Still accepting.")
        services.change_request_approve(change=again, reviewer=carol, comment="Agreed.")
        self.say(f"change request #{again.pk} (v2, accepting the billing regression) approved by bob and carol")
        kept = [line for line in TICKETS_FILE.read_text().splitlines() if json.loads(line)["team"] != "billing"]
        trimmed = eval_services.testset_import(
            name=TESTSET_NAME, data="\n".join(kept) + "\n", file_format="jsonl", agent=agent, actor=admin
        )
        self.say(
            f"admin imports {TESTSET_NAME} v{trimmed.version.number} without the billing tickets "
            f"({trimmed.version.case_count} left): v2 would no longer look like a regression"
        )
        try:
            services.change_request_apply(change=again, actor=alice)
        except DomainError as refusal:
            self.say("REFUSED: " + str(refusal).removeprefix("Refused: "))
        else:
            raise DomainError("An approval on evidence from the old gating set moved the pin; the demo stops here.")
        self.say(
            f"the request is superseded, and its page says why: {self.web_url}/admin/promptctl/changerequest/{again.pk}/change/"
        )

    # --- helpers ---------------------------------------------------------------------

    def deployment_bind(self, *, agent: Agent, version: int) -> str:
        """A nightly deployment on the server (made there, as people do), bound by the admin to production."""
        remote = gateway.deployment_create(
            name=DEPLOYMENT_NAME,
            agent_id=agent.remote_id,
            version=version,
            environment_id=agent.environment_id,
            message="Summarise last night's support tickets by team.",
        )
        services.deployment_bind(agent=agent, deployment_id=remote.id, actor=self.users["admin"])
        self.say(f"admin binds deployment {DEPLOYMENT_NAME} ({remote.id}) to production: it runs v{remote.version}")
        return remote.id

    def show_deployment(self, deployment_id: str, what: str) -> None:
        remote = gateway.deployment_retrieve(deployment_id=deployment_id)  # read back from the server
        self.say(f"deployment {remote.name} {what}: the server says it runs v{remote.version}")

    def production_number(self, agent: Agent) -> int | None:
        pin = selectors.pins_for_agent(agent=agent).get("production")
        return pin.version.number if pin else None

    def run_and_wait(self, *, agent_version: AgentVersion, testset_version: Any, actor: Any) -> Any:
        """Start a run on the worker and show its progress until it ends."""

        run = eval_services.eval_run_start(agent_version=agent_version, testset_version=testset_version, actor=actor)
        self.say(f"eval run #{run.pk}: v{agent_version.number} × {run.unit_total} tickets on the Celery worker")
        deadline = time.monotonic() + self.run_timeout
        last_line = ""
        last_alive = time.monotonic()
        while True:
            run.refresh_from_db()
            progress = eval_selectors.eval_run_progress(run=run)
            filled = int(30 * progress["done"] / max(1, progress["total"]))
            line = f"   [{'#' * filled}{'.' * (30 - filled)}] {progress['done']}/{progress['total']} {run.status}"
            if line != last_line:
                self.write(line)
                last_line = line
            if run.status not in (EvalRun.Status.QUEUED, EvalRun.Status.RUNNING):
                break
            if eval_selectors.workers_alive():
                last_alive = time.monotonic()
            elif time.monotonic() - last_alive > settings.PROMPTCTL_WORKER_STALE_SECONDS:
                raise DomainError(f"Eval run #{run.pk}: " + eval_selectors.workers_missing_message(status=run.status))
            if time.monotonic() > deadline:
                raise DomainError(
                    f"Eval run #{run.pk} did not finish within {self.run_timeout:.0f}s; is the worker running?"
                )
            time.sleep(0.25)
        if run.status != EvalRun.Status.FINISHED:
            raise DomainError(f"Eval run #{run.pk} ended {run.status}: {run.status_reason}")
        summary = eval_selectors.eval_run_summary(run=run)
        self.runs.append(summary)
        self.show_run_scores(summary)
        return run

    def show_run_scores(self, summary: dict) -> None:
        teams = summary["scores"]["teams"]
        wall = summary.get("wall_seconds")
        self.say(f"finished in {wall:.1f}s" if wall is not None else "finished")
        for team, score in sorted(teams.items()):
            self.say(f"{team:13} {score['correct']}/{score['total']}")

    def show_comparison(self, summary: dict) -> None:
        self.say(
            f"comparison #{summary['id']}: v{summary['baseline']['version']} (production) → "
            f"v{summary['candidate']['version']} on {summary['testset']} v{summary['testset_version']}"
        )
        self.say(f"{'team':13} {'baseline':>9} {'candidate':>9} {'delta':>6}  verdict")
        for team, row in sorted(summary["teams"].items()):
            base, cand = row["baseline"], row["candidate"]
            verdict = "REGRESSED" if row["regressed"] else "ok"
            self.say(
                f"{team:13} {base['correct']:>4}/{base['total']:<4} {cand['correct']:>4}/{cand['total']:<4} "
                f"{cand['correct'] - base['correct']:>+6}  {verdict}"
            )
        for flip in summary["flips"]:
            self.say(
                f"flip {flip['ticket']} ({flip['team']}): {flip['direction'].replace('_', ' ')}, "
                f"v{summary['baseline']['version']} said {flip['baseline_answer']}, "
                f"v{summary['candidate']['version']} says {flip['candidate_answer']}"
            )
        self.say(
            f"exact McNemar p = {summary['mcnemar_p']:.3g}; regressed: {', '.join(summary['regressed_teams']) or 'none'}"
        )

    def show_status(self, agent: Agent) -> None:
        status = selectors.agent_status(agent=agent)
        for channel, pin in status["pins"].items():
            self.say(
                f"pin {channel}: v{pin['version']}"
                + (
                    f" (canary v{pin['canary_version']} at {pin['canary_percent']}%)"
                    if pin.get("canary_version")
                    else ""
                )
            )
        for version in status["versions"]:
            self.say(f"version {version['version']}: origin {version['origin']}, by {version['created_by']}")
        for run in self.runs:
            correct = sum(team["correct"] for team in run["scores"]["teams"].values())
            total = sum(team["total"] for team in run["scores"]["teams"].values())
            self.say(f"run #{run['id']}: v{run['version']} {correct}/{total} teams right")
        for change in ChangeRequest.objects.filter(agent=agent).order_by("pk"):
            self.say(f"change #{change.pk}: {change.kind} v{change.target_version.number} — {change.status}")
        self.say("")
        self.say(f"admin: {self.web_url}/admin/   (logins above; try alice, then bob)")
        self.say("")
        self.say("the promptctl client, as alice (bob's token above approves), while the demo serves:")
        self.say(f"   export PROMPTCTL_URL={self.web_url} PROMPTCTL_TOKEN={self.tokens['alice']}")
        self.say(f"   {client_command()} change list")
        self.say("the operator's CLI on the demo's database:")
        python = _shown(Path(sys.executable))
        self.say(f"   DJANGO_DEBUG=true PROMPTCTL_VAR_DIR=var/demo {python} manage.py promptctl audit verify")


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def client_command() -> str:
    """How to run the ``promptctl`` client here: on PATH, beside this Python (``make venv``), or as a module."""
    if shutil.which("promptctl"):
        return "promptctl"
    script = Path(sys.executable).with_name("promptctl")
    if script.exists():
        return _shown(script)
    return f"{_shown(Path(sys.executable))} -m promptctl_client"


def story_play(*, web_url: str, write: Callable[[str], None] = lambda line: print(line, flush=True)) -> int:
    try:
        Story(web_url=web_url, write=write).play()
    except DomainError as refusal:
        write(f"demo stopped: {refusal}")
        return 1
    return 0
