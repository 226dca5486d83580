"""``promptctl audit verify``: walk the hash chain and name the first broken event."""

from __future__ import annotations

from promptctl import selectors
from promptctl.errors import DomainError


def register(groups) -> None:
    group = groups.add_parser("audit", help="the audit trail")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = actions.add_parser("verify", help="check that no audit event was changed or deleted")
    verify.set_defaults(handler=audit_verify)


def audit_verify(options, out):
    result = selectors.audit_chain_verify()
    if result.ok:
        out.human(result.message)
        return result.as_dict()
    if options.json:
        return result.as_dict(), 1
    raise DomainError(result.message)
