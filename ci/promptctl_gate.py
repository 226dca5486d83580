"""The CI gate for a prompt file: version it, score it against production, post the comparison, file the promotion.

    PROMPTCTL_URL=... PROMPTCTL_TOKEN=pctlu_... AGENT=ticket-triage PROMPT_FILE=prompts/ticket-triage.txt \
        PR_REF="acme/support#42" python ci/promptctl_gate.py

Every step is a call of the ``promptctl`` client (``python -m promptctl_client``,
or the command in ``PROMPTCTL_CLIENT``) with ``--json``; nothing here imports
promptctl's server, so the script runs wherever the client does (standard
library only). The token should be a bot's (``promptctl user add ci-bot --role
bot --token-name ci``): a bot may file a change request but never approve one,
so whatever CI does, a person still decides.

Steps (docs/CI.md says why each is so):

1. ``whoami``, ``agent show``: who files, and which version production pins.
2. ``version create`` from the prompt file. When the agent's newest version
   already has exactly this prompt (a re-run of the job), that version is used;
   when it is production's own version, there is nothing to promote: exit 0.
3. ``eval run --wait`` of production's version and of the new one, at the same
   time, on the agent's gating set: a comparison of two runs made together.
4. ``eval compare`` of those two runs; its summary goes to stdout and, as
   markdown, to ``$GITHUB_STEP_SUMMARY`` and ``$GATE_SUMMARY_FILE`` when set.
5. ``change request --kind promote --evidence comparison:ID``, after withdrawing
   the bot's open requests of earlier runs for the same ``PR_REF``. Not filed
   when the comparison flags a regression: promptctl refuses to file a
   promotion that does not accept its regression (it could never be applied),
   and accepting one is a person's decision (``--accept-regression REASON``,
   one approval more), not the bot's.

Exit status: 0 no team regressed (request filed); 1 the comparison flags a
regression (no request filed, the check fails); 2 the gate could not run
(missing setting, refusal, a run that did not finish), with one line on stderr.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

EXIT_OK, EXIT_REGRESSED, EXIT_FAILED = 0, 1, 2
REQUIRED = ("PROMPTCTL_URL", "PROMPTCTL_TOKEN", "AGENT", "PROMPT_FILE")
SAME_PROMPT = re.compile(r"Version (\d+) of .+ already has exactly this system prompt")


class GateError(Exception):
    """The gate could not run; one line for the CI log."""


def client_command() -> list[str]:
    configured = os.environ.get("PROMPTCTL_CLIENT", "").strip()
    return shlex.split(configured) if configured else [sys.executable, "-m", "promptctl_client"]


def client_start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*client_command(), "--json", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def client_finish(process: subprocess.Popen, step: str, *, ok_codes: tuple[int, ...] = (0,)) -> tuple[int, object]:
    """Wait for a client call; its exit status and parsed JSON, or GateError with the client's own line."""
    out, err = process.communicate()
    if process.returncode in ok_codes:
        try:
            return process.returncode, json.loads(out)
        except ValueError:
            pass
    lines = [line for line in err.splitlines() if line.strip()]
    reason = lines[-1].removeprefix("error: ") if lines else f"exit status {process.returncode}, no message"
    raise GateError(f"{step}: {reason}")


def client(*args: str, step: str, ok_codes: tuple[int, ...] = (0,)) -> tuple[int, object]:
    return client_finish(client_start(*args), step, ok_codes=ok_codes)


def settings_read() -> dict[str, str]:
    missing = [name for name in REQUIRED if not os.environ.get(name, "").strip()]
    if missing:
        raise GateError(f"set {', '.join(missing)} (docs/CI.md lists the settings)")
    values = {name: os.environ[name].strip() for name in REQUIRED}
    if not os.path.isfile(values["PROMPT_FILE"]):
        raise GateError(f"PROMPT_FILE {values['PROMPT_FILE']!r} is not a file")
    values["TESTSET"] = os.environ.get("TESTSET", "").strip()
    values["PR_REF"] = os.environ.get("PR_REF", "").strip() or "CI"
    values["TIMEOUT"] = os.environ.get("GATE_TIMEOUT", "").strip() or "1800"
    return values


def version_make(agent: str, prompt_file: str) -> tuple[int, bool]:
    """The version holding the prompt file: made now, or (a re-run) the newest one already holding it."""
    process = client_start("version", "create", "--agent", agent, "--system-file", prompt_file)
    out, err = process.communicate()
    if process.returncode == 0:
        return int(json.loads(out)["version"]), True
    same = SAME_PROMPT.search(err)
    if same:
        return int(same.group(1)), False
    lines = [line for line in err.splitlines() if line.strip()]
    raise GateError(f"version create: {lines[-1].removeprefix('error: ') if lines else 'no message'}")


def runs_score(settings: dict[str, str], versions: dict[str, int]) -> dict[str, dict]:
    """Both versions scored at the same time (two client processes, each following its run)."""
    started = {}
    for role, number in versions.items():
        args = ["eval", "run", "--agent", settings["AGENT"], "--version", str(number), "--wait"]
        args += ["--timeout", settings["TIMEOUT"]] + (["--testset", settings["TESTSET"]] if settings["TESTSET"] else [])
        started[role] = client_start(*args)
    runs = {}
    for role, process in started.items():
        _code, run = client_finish(process, f"eval run of the {role} v{versions[role]}", ok_codes=(0, 1))
        assert isinstance(run, dict)
        if run.get("status") != "finished":
            reason = f": {run['status_reason']}" if run.get("status_reason") else ""
            raise GateError(f"eval run #{run.get('id')} of the {role} v{versions[role]} is {run.get('status')}{reason}")
        runs[role] = run
    return runs


def summary_markdown(comparison: dict, *, settings: dict[str, str], change: dict | None) -> str:
    """The comparison as a reviewer reads it on the pull request."""
    agent, base, cand = comparison["agent"], comparison["baseline"], comparison["candidate"]
    verdict = (
        f"**REGRESSED: {', '.join(comparison['regressed_teams'])}** (more than {comparison['tolerance']} ticket(s) lost)"
        if comparison["regressed"]
        else "**No team regressed.**"
    )
    lines = [
        f"## promptctl: `{settings['PROMPT_FILE']}` → {agent} v{cand['version']}",
        "",
        f"Compared with production v{base['version']} on {comparison['testset']} v{comparison['testset_version']} "
        f"(comparison #{comparison['id']}, runs #{base['run']} and #{cand['run']}): {verdict}",
        "",
        "| team | production | candidate | delta | McNemar p | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for team, row in comparison["teams"].items():
        b, c = row["baseline"], row["candidate"]
        lines.append(
            f"| {team} | {b['correct']}/{b['total']} | {c['correct']}/{c['total']} | {row['delta']:+d} "
            f"| {row['mcnemar_p']:.3g} | {'**REGRESSED**' if row['regressed'] else 'ok'} |"
        )
    arrows = {"right_to_wrong": "right → wrong", "wrong_to_right": "wrong → right"}
    if comparison["flips"]:
        lines += ["", "Flipped tickets:", ""]
        lines += [
            f"- {f['ticket']} ({f['team']}): {arrows.get(f['direction'], f['direction'])} "
            f"(`{f['baseline_answer']}` → `{f['candidate_answer']}`)"
            for f in comparison["flips"]
        ]
    lines.append("")
    if change is None and comparison["regressed"]:
        lines.append(
            "No change request was filed: promptctl refuses a promotion whose comparison flags a regression it "
            "does not accept. Fix the prompt, or, if the regression is intended, a person files it accepting it "
            f"(`promptctl change request --agent {agent} --kind promote --to {cand['version']} "
            f"--evidence {comparison['evidence']} --accept-regression REASON`, one approval more)."
        )
    elif change is None:
        lines.append("No change request was filed.")
    else:
        lines.append(
            f"Change request #{change['id']} (promote v{change['target_version']}, evidence {comparison['evidence']}) "
            f"is {change['status']}: it needs {change['approvals_required']} approval(s) from a reviewer."
        )
    return "\n".join(lines) + "\n"


def summary_post(text: str) -> None:
    """To stdout, appended to the job's summary page, and to ``GATE_SUMMARY_FILE`` (for a pull-request comment)."""
    sys.stdout.write(text)
    for variable, mode in (("GITHUB_STEP_SUMMARY", "a"), ("GATE_SUMMARY_FILE", "w")):
        path = os.environ.get(variable, "").strip()
        if path:
            with open(path, mode, encoding="utf-8") as handle:
                handle.write(text)


def earlier_requests_withdraw(settings: dict[str, str], bot: str, marker: str) -> list[int]:
    """The bot's still-open promotions of earlier runs for this pull request: withdrawn (this run replaces them)."""
    _code, changes = client("change", "list", "--agent", settings["AGENT"], step="change list")
    assert isinstance(changes, list)
    withdrawn = []
    for change in changes:
        if (
            change["requested_by"] == bot
            and change["status"] in ("pending", "approved")
            and change["kind"] == "promote"
            and str(change.get("reason", "")).startswith(marker)
        ):
            client("change", "withdraw", str(change["id"]), step=f"change withdraw {change['id']}")
            withdrawn.append(change["id"])
    return withdrawn


def gate(settings: dict[str, str]) -> int:
    agent = settings["AGENT"]
    _code, me = client("whoami", step="whoami")
    _code, status = client("agent", "show", "--agent", agent, step="agent show")
    assert isinstance(me, dict) and isinstance(status, dict)
    production = (status.get("pins") or {}).get("production")
    if not production:
        raise GateError(f"{agent} has no production pin yet: promote a first version by hand, then CI compares to it")
    prod = int(production["version"])

    new, created = version_make(agent, settings["PROMPT_FILE"])
    print(f"promptctl-gate: {settings['PROMPT_FILE']} is {agent} v{new} ({'created' if created else 'already there'})")
    if new == prod:
        summary_post(
            f"## promptctl: `{settings['PROMPT_FILE']}` is production's {agent} v{prod}: nothing to promote.\n"
        )
        return EXIT_OK

    runs = runs_score(settings, {"baseline": prod, "candidate": new})
    _code, comparison = client(
        "eval", "compare", "--agent", agent,
        "--baseline-run", str(runs["baseline"]["id"]), "--candidate-run", str(runs["candidate"]["id"]),
        step="eval compare", ok_codes=(0, 1),
    )  # fmt: skip
    assert isinstance(comparison, dict)
    regressed = bool(comparison["regressed"])

    marker = f"{settings['PR_REF']}:"
    withdrawn = earlier_requests_withdraw(settings, me["username"], marker)
    reason = (
        f"{marker} {settings['PROMPT_FILE']} as v{new}; comparison #{comparison['id']} against production "
        f"v{prod}: {'REGRESSED ' + ', '.join(comparison['regressed_teams']) if regressed else 'no team regressed'}"
    )
    change = None
    if not regressed:
        _code, change = client(
            "change", "request", "--agent", agent, "--kind", "promote", "--to", str(new),
            "--evidence", comparison["evidence"], "--reason", reason, step="change request",
        )  # fmt: skip
        assert isinstance(change, dict)
    if withdrawn:
        print(f"promptctl-gate: withdrew earlier request(s) {', '.join(f'#{i}' for i in withdrawn)} of {marker[:-1]}")
    summary_post(summary_markdown(comparison, settings=settings, change=change))
    return EXIT_REGRESSED if regressed else EXIT_OK


def main() -> int:
    try:
        return gate(settings_read())
    except GateError as error:
        sys.stderr.write(f"promptctl-gate: {error}\n")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
