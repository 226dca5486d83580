"""The promotion hook: what evidence a change request freezes, and what applying it requires.

``promptctl.services`` calls exactly these two functions; their rules live in
``evals.gating`` (the evals app owns them). Signatures are a contract: keep them.

A promotion on the production channel must carry an eval comparison of the
candidate against the current production version on the agent's gating test
set (a finished run of the candidate for the first promotion). A comparison
that flags a regression blocks the apply unless the request gives an
accept-regression reason, which needs one approval more than the policy.
Other channels and kinds take evidence optionally; rollbacks never need new
evidence: the version was production before.
"""

from __future__ import annotations

from typing import Any


def change_evidence_resolve(
    *,
    agent: Any,
    channel: str,
    kind: str,
    target_version: Any,
    evidence_ref: str | None,
    accept_regression_reason: str,
) -> dict[str, Any]:
    """The evidence to freeze on a new change request, or a ``DomainError`` refusing the request.

    Returns ``{"evidence_type": str, "evidence_id": int | None, "evidence": dict}``.
    ``evidence_ref`` is what the requester typed (``comparison:12``, ``run:7`` or,
    off the gated path, any other reference); ``None`` or blank means none was given.
    """
    from evals.gating import evidence_resolve

    return evidence_resolve(
        agent=agent,
        channel=channel,
        kind=kind,
        target_version=target_version,
        evidence_ref=evidence_ref,
        accept_regression_reason=accept_regression_reason,
    )


def change_apply_gate(*, change: Any) -> None:
    """Refuse (``DomainError``) to apply ``change`` when its evidence does not allow the pin to move.

    Called inside ``change_request_apply`` with the pin and the request locked,
    after the status and approval checks and before the pin moves.
    """
    from evals.gating import apply_gate

    apply_gate(change=change)
