"""The promotion hook: what evidence a change request freezes, and what applying it requires.

``promptctl.services`` calls exactly these two functions; the evals app owns
their bodies (it will require an eval comparison with no flagged regression for
production promotions). Signatures are a contract: keep them.

This version makes evidence optional: a reference is stored as given and
applying checks nothing beyond the approvals the services already enforce.
Rollbacks never need new evidence: the version was production before.
"""

from __future__ import annotations

import re
from typing import Any

from promptctl.errors import DomainError

_TYPED_REFERENCE = re.compile(r"^(?P<type>[a-z][a-z_-]{0,31}):(?P<id>\d{1,18})$")


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
    ``evidence_ref`` is what the requester typed (``comparison:12``, ``run:7`` or
    any other reference); ``None`` or blank means none was given.
    """
    reference = (evidence_ref or "").strip()
    if not reference:
        return {"evidence_type": "", "evidence_id": None, "evidence": {}}
    if len(reference) > 500:
        raise DomainError("The evidence reference is longer than 500 characters: give an id such as comparison:12.")
    typed = _TYPED_REFERENCE.match(reference)
    if typed:
        return {
            "evidence_type": typed["type"],
            "evidence_id": int(typed["id"]),
            "evidence": {"reference": reference},
        }
    return {"evidence_type": "reference", "evidence_id": None, "evidence": {"reference": reference}}


def change_apply_gate(*, change: Any) -> None:
    """Refuse (``DomainError``) to apply ``change`` when its evidence does not allow the pin to move.

    Called inside ``change_request_apply`` with the pin and the request locked,
    after the status and approval checks and before the pin moves.
    """
    return None
