"""The promotion gate's rules: registered as ``promptctl``'s promotion gate in ``EvalsConfig.ready()``.

A request to promote a version on the production channel, and a production
canary above the agent's ``canary_evidence_above_percent`` share (default 10 %:
a 99 % canary is a promotion in all but name), must carry evidence measured on
the agent's gating test set (its current contents):

- when production already has a pin: a comparison whose baseline is a run of
  the pinned version and whose candidate is a run of the target version;
- for the agent's first production promotion: a finished run of the target
  (a comparison with the target as candidate is accepted too).

A comparison that flags a regression blocks the apply unless the request gives
an accept-regression reason; the change-control services then require one
approval more than the agent's policy, and the apply gate checks it again. The
evidence is frozen on the request as a snapshot reviewers read, and re-checked
when the request is applied. Other channels and kinds (rollback, canaries at
or below the threshold) take evidence optionally and are not gated: a rollback
returns to a version that production already ran.

Gated evidence names the gating set version it was judged on, and a request
whose agent's gating set changed after filing is stale (``evals.gate_inputs``):
``change_request_apply`` supersedes it. When the gating set changed since the
production version was promoted, the evidence says how (reviewers see it).
"""

from __future__ import annotations

import re
from typing import Any

from django.urls import reverse

from evals import gate_inputs, selectors
from evals.models import Comparison, EvalRun, TestSet
from promptctl.errors import DomainError, Fix
from promptctl.models import PRODUCTION, Pin
from promptctl.registry import registry

_REFERENCE = re.compile(r"^(?P<type>comparison|run)[:#-]?(?P<id>\d{1,18})$", re.IGNORECASE)
_ANY_TYPED = re.compile(r"^(?P<type>[a-z][a-z_-]{0,31}):(?P<id>\d{1,18})$")


def is_gated(*, channel: str, kind: str, canary_percent: int = 0, agent=None) -> bool:
    """Production promotions, and production canaries above the agent's evidence threshold."""
    if channel != PRODUCTION:
        return False
    if kind == "promote":
        return True
    threshold = agent.canary_evidence_above_percent if agent is not None else 0
    return kind == "canary" and canary_percent > threshold


def _gated_change(change) -> bool:
    """Gated now, or gated when filed (a later policy change does not loosen a filed request)."""
    return bool((change.evidence or {}).get("gate")) or is_gated(
        channel=change.channel, kind=change.kind, canary_percent=change.canary_percent, agent=change.agent
    )


def _what(agent, kind: str, canary_percent: int) -> str:
    if kind == "canary":
        return (
            f"a {canary_percent}% production canary of {agent.name} (above its "
            f"{agent.canary_evidence_above_percent}% threshold, so it needs the evidence a promotion needs)"
        )
    return f"a production promotion of {agent.name}"


def _teams_line(result: dict) -> str:
    parts = []
    for team, row in result["teams"].items():
        b, c = row["baseline"], row["candidate"]
        mark = " REGRESSED" if row["regressed"] else ""
        parts.append(f"{team} {b['correct']}/{b['total']} → {c['correct']}/{c['total']} ({row['delta']:+d}){mark}")
    return "; ".join(parts)


def _flips_line(flips: list[dict]) -> str:
    if not flips:
        return "no ticket flipped"
    arrows = {"right_to_wrong": "right→wrong", "wrong_to_right": "wrong→right"}
    return ", ".join(f"{f['ticket']} ({f['team']}, {arrows[f['direction']]})" for f in flips)


def comparison_snapshot(comparison: Comparison) -> dict[str, Any]:
    """What reviewers see on the request: verdict, per-team counts, flips, p-value, warnings."""
    summary = selectors.comparison_summary(comparison=comparison)
    verdict = (
        f"REGRESSED: {', '.join(summary['regressed_teams'])} lost more than {summary['tolerance']} ticket(s)"
        if summary["regressed"]
        else f"no team lost more than {summary['tolerance']} ticket(s)"
    )
    summary["summary"] = (
        f"comparison #{comparison.pk}: v{summary['baseline']['version']} (run #{summary['baseline']['run']}) → "
        f"v{summary['candidate']['version']} (run #{summary['candidate']['run']}) on {summary['testset']} "
        f"v{summary['testset_version']}. {verdict}. Teams: {_teams_line(comparison.result)}. "
        f"Flips: {_flips_line(summary['flips'])}. Exact McNemar p = {summary['mcnemar_p']:.3g}."
    )
    summary["type"] = "comparison"
    summary["url"] = reverse("admin:evals_comparison_change", args=[comparison.pk])
    summary["scored_on"] = gate_inputs.gating_set_record(comparison.baseline_run.testset_version)
    return summary


def run_snapshot(run: EvalRun) -> dict[str, Any]:
    data = selectors.eval_run_summary(run=run, with_scores=True)
    data.pop("tickets", None)
    teams = data["scores"]["teams"]
    team_line = "; ".join(f"{team} {row['correct']}/{row['total']}" for team, row in teams.items())
    data["summary"] = (
        f"run #{run.pk}: v{data['version']} on {data['testset']} v{data['testset_version']}, {data['status']}. "
        f"Teams: {team_line}."
    )
    data["type"] = "run"
    data["regressed"] = False
    data["url"] = reverse("admin:evals_evalrun_change", args=[run.pk])
    return data


def _parse(reference: str) -> tuple[str, int] | None:
    match = _REFERENCE.match(reference)
    if not match:
        return None
    return match["type"].lower(), int(match["id"])


START_RUN = ("admin:evals_evalrun_add", ())
FILE_REQUEST = ("admin:promptctl_changerequest_add", ())
COMPARISON_MAKES_ONE = Fix(
    cli="`promptctl eval compare ...` makes one.",
    web="Press Compare on an eval run's page to make one.",
    link=("admin:evals_evalrun_changelist", ()),
)
RUN_STARTS_ONE = Fix(cli="`promptctl eval run ...` starts one.", web="Eval runs, Start run starts one.", link=START_RUN)


def _next_steps(agent, target_number: int, pinned_number: int | None, testset: TestSet | None) -> Fix:
    """The evidence to gather, per door: the commands to type, or the pages and buttons to use."""
    testset_flag = f" --testset {testset.name}" if testset else ""
    if pinned_number is None:
        return Fix(
            cli=f"This is {agent.name}'s first production promotion: run the candidate on the gating set "
            f"(`promptctl eval run --agent {agent.name} --version {target_number}{testset_flag} --wait`) and file "
            "with `--evidence run:RUN_ID`.",
            web=f"This is {agent.name}'s first production promotion: start an eval run of v{target_number} on the "
            "gating set (Eval runs, Start run) and pick that run as the request's evidence.",
            link=START_RUN,
        )
    return Fix(
        cli=f"Compare the candidate with production v{pinned_number}: "
        f"`promptctl eval compare --agent {agent.name} --baseline {pinned_number} --candidate {target_number}"
        f"{testset_flag}` (after `promptctl eval run` of both versions on the gating set), and file with "
        "`--evidence comparison:ID`.",
        web=f"Compare the candidate with production v{pinned_number}: start eval runs of both versions on the "
        f"gating set (Eval runs, Start run), press Compare on the v{target_number} run's page, and pick that "
        "comparison as the request's evidence.",
        link=START_RUN,
    )


def evidence_resolve(
    *,
    agent,
    channel: str,
    kind: str,
    target_version,
    evidence_ref: str | None,
    accept_regression_reason: str,
    canary_percent: int = 0,
) -> dict[str, Any]:
    """The evidence to freeze on a new change request, or a ``DomainError`` saying what is missing."""
    reference = (evidence_ref or "").strip()
    if not is_gated(channel=channel, kind=kind, canary_percent=canary_percent, agent=agent):
        return _ungated(reference)
    testset = selectors.testset_gating_for(agent=agent)
    pin = Pin.objects.select_related("version").filter(agent=agent, channel=PRODUCTION).first()
    pinned = pin.version if pin else None
    pinned_number = pinned.number if pinned else None
    if testset is None:
        then = _next_steps(agent, target_version.number, pinned_number, None)
        raise DomainError(
            f"Refused: {_what(agent, kind, canary_percent)} needs eval evidence on its gating test set, and "
            f"{agent.name} has none.",
            code="gating_set_missing",
            fix=Fix(
                cli=f"Import one with `promptctl testset import FILE --name NAME --agent {agent.name} --gating`. "
                "Then: " + then.cli,
                web=f"Upload one (Test sets, Upload) for {agent.name} with Gating ticked. Then: " + then.web,
                link=("admin:evals_testset_add", ()),
            ),
        )
    gating_version = selectors.testset_version_latest(testset=testset)
    if not reference:
        then = _next_steps(agent, target_version.number, pinned_number, testset)
        raise DomainError(
            f"Refused: {_what(agent, kind, canary_percent)} must carry eval evidence.",
            code="evidence_missing",
            fields=("evidence",),
            fix=Fix(cli="Give it with --evidence. " + then.cli, web=then.web, link=then.link),
        )
    parsed = _parse(reference)
    if parsed is None:
        then = _next_steps(agent, target_version.number, pinned_number, testset)
        raise DomainError(
            f"Refused: evidence {reference!r} is not a comparison or run id (write comparison:ID or run:ID).",
            code="evidence_unreadable",
            fields=("evidence",),
            fix=then,
        )
    evidence_type, evidence_id = parsed
    if evidence_type == "run":
        if pinned is not None:
            raise DomainError(
                f"Refused: production already runs v{pinned_number}, so a run alone is not enough evidence: "
                "the candidate must be compared with it.",
                code="evidence_needs_comparison",
                fields=("evidence",),
                fix=_next_steps(agent, target_version.number, pinned_number, testset),
            )
        run = (
            EvalRun.objects.select_related("agent_version__agent", "testset_version__testset")
            .filter(pk=evidence_id)
            .first()
        )
        _check_run(run, evidence_id, agent, target_version, gating_version)
        if accept_regression_reason:
            raise DomainError(
                "",
                code="accept_regression_not_applicable",
                fields=("accept_regression_reason",),
                fix=Fix(
                    cli="Refused: --accept-regression only applies to a comparison that flags a regression; a first "
                    "promotion's run evidence has nothing to accept. Leave it out.",
                    web="Refused: accepting a regression only applies to a comparison that flags one; a first "
                    "promotion's run evidence has nothing to accept. Leave the accept-regression reason empty.",
                ),
            )
        return {
            "evidence_type": "run",
            "evidence_id": run.pk,
            "evidence": _with_shadow(_gate_record(run_snapshot(run), agent, kind, gating_version), target_version),
        }
    comparison = Comparison.objects.filter(pk=evidence_id).first()
    _check_comparison(comparison, evidence_id, agent, target_version, pinned, gating_version)
    snapshot = comparison_snapshot(comparison)
    # A regressed comparison the request does not accept is refused by the change-control
    # service right after this (``_regression_accepted_or_refuse``: it could never be applied);
    # ``apply_gate`` checks the same again when the request is applied.
    if accept_regression_reason and not comparison.regressed:
        raise DomainError(
            f"Refused: comparison #{comparison.pk} flags no regression, so there is nothing to accept.",
            code="accept_regression_not_applicable",
            fields=("accept_regression_reason",),
            fix=Fix(
                cli="Leave out --accept-regression (it would only demand an extra approval).",
                web="Leave the accept-regression reason empty (it would only demand an extra approval).",
            ),
        )
    return {
        "evidence_type": "comparison",
        "evidence_id": comparison.pk,
        "evidence": _with_shadow(_gate_record(snapshot, agent, kind, gating_version), target_version),
    }


def _gate_record(snapshot: dict[str, Any], agent, kind: str, gating_version) -> dict[str, Any]:
    """Freeze which gate judged the request, on which gating set version, and how that set moved since production."""
    snapshot["gate"] = "canary" if kind == "canary" else "promotion"
    snapshot["gating_set"] = gate_inputs.gating_set_record(gating_version)
    changed = gate_inputs.gating_set_change(agent=agent, current=gating_version)
    if changed is not None:
        snapshot["gate_inputs_changed"] = changed
    return snapshot


def _with_shadow(snapshot: dict[str, Any], target_version) -> dict[str, Any]:
    """Add the candidate's shadow record (live tickets it ran on beside production), when it has one.

    Frozen with the rest of the evidence, so reviewers see how the version
    behaved on real traffic as well as on the test set. The record comes from
    the apps above (triage registers it), through the registry.
    """
    for extend in registry.evidence_extenders:
        snapshot = extend(snapshot, target_version)
    return snapshot


def _ungated(reference: str) -> dict[str, Any]:
    if not reference:
        return {"evidence_type": "", "evidence_id": None, "evidence": {}}
    if len(reference) > 500:
        raise DomainError("The evidence reference is longer than 500 characters: give an id such as comparison:12.")
    parsed = _parse(reference)
    if parsed is not None:
        evidence_type, evidence_id = parsed
        if evidence_type == "comparison":
            comparison = Comparison.objects.filter(pk=evidence_id).first()
            if comparison is None:
                raise DomainError(
                    f"There is no comparison #{evidence_id}.",
                    code="evidence_not_found",
                    fields=("evidence",),
                    fix=COMPARISON_MAKES_ONE,
                )
            snapshot = comparison_snapshot(comparison)  # names the test set version it was scored on
            return {"evidence_type": "comparison", "evidence_id": evidence_id, "evidence": snapshot}
        run = EvalRun.objects.filter(pk=evidence_id).first()
        if run is None:
            raise DomainError(
                f"There is no eval run #{evidence_id}.",
                code="evidence_not_found",
                fields=("evidence",),
                fix=RUN_STARTS_ONE,
            )
        return {"evidence_type": "run", "evidence_id": evidence_id, "evidence": run_snapshot(run)}
    typed = _ANY_TYPED.match(reference)
    if typed:
        return {"evidence_type": typed["type"], "evidence_id": int(typed["id"]), "evidence": {"reference": reference}}
    return {"evidence_type": "reference", "evidence_id": None, "evidence": {"reference": reference}}


def _check_run(run, evidence_id, agent, target_version, gating_version) -> None:
    if run is None:
        raise DomainError(f"Refused: there is no eval run #{evidence_id}.")
    if run.agent_version_id != target_version.pk:
        raise DomainError(
            f"Refused: run #{run.pk} scored {run.agent_version.agent.name} v{run.agent_version.number}, not the "
            f"version being promoted (v{target_version.number}). Run v{target_version.number} on the gating set."
        )
    if run.status != EvalRun.Status.FINISHED:
        raise DomainError(
            f"Refused: run #{run.pk} is {run.status}; evidence must be a finished run.",
            code="evidence_run_unfinished",
            fields=("evidence",),
            fix=Fix(
                cli=f"Follow it with `promptctl eval show {run.pk}`.",
                web="Follow it on its run page.",
                link=("admin:evals_evalrun_change", (run.pk,)),
            ),
        )
    if run.testset_version.content_hash != gating_version.content_hash:
        raise DomainError(
            f"Refused: run #{run.pk} used {run.testset_version.testset.name} v{run.testset_version.number}, not the "
            f"current contents of {agent.name}'s gating set ({gating_version.testset.name} v{gating_version.number}). "
            f"Run v{target_version.number} on it again."
        )


def _check_comparison(comparison, evidence_id, agent, target_version, pinned, gating_version) -> None:
    if comparison is None:
        raise DomainError(
            f"Refused: there is no comparison #{evidence_id}.",
            code="evidence_not_found",
            fields=("evidence",),
            fix=COMPARISON_MAKES_ONE,
        )
    if comparison.agent_id != agent.pk:
        raise DomainError(
            f"Refused: comparison #{comparison.pk} is about agent {comparison.agent.name}, not {agent.name}."
        )
    candidate = comparison.candidate_run.agent_version
    baseline = comparison.baseline_run.agent_version
    if candidate.pk != target_version.pk:
        raise DomainError(
            f"Refused: comparison #{comparison.pk} has v{candidate.number} as its candidate, but this request promotes "
            f"v{target_version.number}. Compare v{target_version.number} instead."
        )
    if pinned is not None and baseline.pk != pinned.pk:
        raise DomainError(
            f"Refused: comparison #{comparison.pk} compares against v{baseline.number}, but production runs "
            f"v{pinned.number}: the baseline must be the current production version.",
            code="evidence_wrong_baseline",
            fields=("evidence",),
            fix=Fix(
                cli=f"`promptctl eval compare --agent {agent.name} --baseline {pinned.number} "
                f"--candidate {target_version.number}`.",
                web=f"On the page of a v{target_version.number} run press Compare with a run of v{pinned.number} "
                "on the same test set as the baseline.",
                link=("admin:evals_evalrun_changelist", ()),
            ),
        )
    if comparison.content_hash != gating_version.content_hash:
        raise DomainError(
            f"Refused: comparison #{comparison.pk} was measured on test set contents {comparison.content_hash[:12]}, "
            f"not the current contents of {agent.name}'s gating set ({gating_version.testset.name} "
            f"v{gating_version.number}, {gating_version.content_hash[:12]}). Run both versions on it and compare again."
        )


def stale_reason(*, change) -> str | None:
    """Why a gated request was judged on a gating set that is no longer the agent's (see ``evals.gate_inputs``)."""
    return gate_inputs.stale_reason(change=change, agent=change.agent, gated=_gated_change(change))


def apply_gate(*, change) -> None:
    """Refuse to apply a gated request whose evidence no longer allows the pin to move."""
    if not _gated_change(change):
        return
    agent = change.agent
    if change.evidence_type not in ("comparison", "run") or change.evidence_id is None:
        raise DomainError(
            f"Cannot apply change request #{change.pk}: {_what(agent, change.kind, change.canary_percent)} needs "
            "eval evidence and this request carries none.",
            code="evidence_missing",
            fields=("evidence",),
            fix=Fix(
                cli="File a new request with --evidence comparison:ID (or run:ID for a first promotion).",
                web="File a new request that cites a comparison as its evidence (or a run, for a first promotion).",
                link=FILE_REQUEST,
            ),
        )
    testset = selectors.testset_gating_for(agent=agent)
    if testset is None:
        raise DomainError(
            f"Cannot apply change request #{change.pk}: {agent.name} no longer has a gating test set, so its evidence "
            "cannot be checked. Mark a gating set and file a new request."
        )
    gating_version = selectors.testset_version_latest(testset=testset)
    pin = Pin.objects.select_related("version").filter(agent=agent, channel=PRODUCTION).first()
    pinned = pin.version if pin else None
    try:
        if change.evidence_type == "run":
            run = (
                EvalRun.objects.select_related("agent_version__agent", "testset_version__testset")
                .filter(pk=change.evidence_id)
                .first()
            )
            if pinned is not None:
                raise DomainError(
                    f"production now runs v{pinned.number}, so a run alone is not enough: compare against it"
                )
            _check_run(run, change.evidence_id, agent, change.target_version, gating_version)
            return
        comparison = Comparison.objects.filter(pk=change.evidence_id).first()
        _check_comparison(comparison, change.evidence_id, agent, change.target_version, pinned, gating_version)
    except DomainError as error:

        def held(wording: str) -> str:
            return wording.removeprefix("Refused: ")

        raise DomainError(
            "",
            code="evidence_stale",
            fields=("evidence",),
            fix=Fix(
                cli=f"Cannot apply change request #{change.pk}: its evidence no longer holds "
                f"({held(error.cli_message())}). File a new request with fresh evidence.",
                web=f"Cannot apply change request #{change.pk}: its evidence no longer holds "
                f"({held(error.web_message())}). File a new request with fresh evidence.",
                link=FILE_REQUEST,
            ),
        ) from error
    if not comparison.regressed:
        return
    if not change.accept_regression_reason.strip():
        needed = agent.required_approvals + 1
        raise DomainError(
            f"Cannot apply change request #{change.pk}: comparison #{comparison.pk} flags a regression "
            f"({', '.join(comparison.result['regressed_teams'])}): {_teams_line(comparison.result)}. "
            f"Flipped tickets: {_flips_line(comparison.result['flips'])}. The request does not accept it.",
            code="regression_not_accepted",
            fields=("accept_regression_reason",),
            fix=Fix(
                cli="Fix the prompt and compare again, or, if the regression is intended, withdraw this request and "
                f"file one with --accept-regression REASON: it needs {needed} approvals (one more than the policy).",
                web="Fix the prompt and compare again, or, if the regression is intended, press Withdraw and file a "
                'new request with a reason under "Accept a flagged regression because": it needs '
                f"{needed} approvals (one more than the policy).",
                link=FILE_REQUEST,
            ),
        )
    approvals = change.approvals.filter(decision="approve").count()
    needed = agent.required_approvals + 1
    if approvals < needed:
        raise DomainError(
            f"Cannot apply change request #{change.pk}: it accepts a regression, which needs {needed} approvals "
            f"(one more than {agent.name}'s policy of {agent.required_approvals}); it has {approvals}."
        )


class EvalsPromotionGate:
    """``promptctl.registry.PromotionGate``: the evals app's rules for evidence and applying."""

    evidence_resolve = staticmethod(evidence_resolve)
    stale_reason = staticmethod(stale_reason)
    apply_gate = staticmethod(apply_gate)
