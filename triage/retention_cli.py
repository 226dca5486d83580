"""``promptctl retention purge [--dry-run] [--json]``: apply the retention policy now and print the counts.

The operator's command (the same purge the beat schedule runs hourly,
``triage.retention_purge``). With ``$PROMPTCTL_TOKEN`` it acts as that
person, who must be a superuser; without, it runs as the operator, recorded
with no actor. A dry run counts what is due and changes nothing.
"""

from __future__ import annotations

import argparse

from promptctl.cli.common import actor_from_options, add_actor_argument
from triage.services import retention


def register(groups) -> None:
    group = groups.add_parser("retention", help="retention of customer text and history (docs/OPERATIONS.md)")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    purge = actions.add_parser(
        "purge",
        help="empty ticket text older than PROMPTCTL_RETENTION_TICKET_TEXT_DAYS and delete history rows older "
        "than PROMPTCTL_RETENTION_HISTORY_DAYS (each object's latest kept); one audit event with the counts",
    )
    purge.add_argument("--dry-run", action="store_true", help="count what is due; change nothing")
    # Also accepted after the action; SUPPRESS keeps the top-level `promptctl --json ...` working.
    purge.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON only")
    add_actor_argument(purge, required=False)
    purge.set_defaults(handler=retention_purge)


def retention_purge(options, out):
    actor = actor_from_options(options, required=False)
    result = retention.retention_purge(actor=actor, dry_run=options.dry_run)
    out.human(result.sentence())
    for label, count in sorted(result.history_deleted.items()):
        out.human(f"  {label}: {count}")
    if not result.dry_run and not result.changed:
        out.human("Nothing was due: no audit event written.")
    return result.as_dict()
