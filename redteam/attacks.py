"""The insider's attacks, each played from the baseline (the tutorial's story: v1 in production, v2 regressed).

An attack returns ``(outcome, how)``: ``refused`` (promptctl or the database
said no; ``how`` quotes it), ``detected`` (it happened, and ``audit verify``
names it), ``recorded`` (it is allowed, and the audit trail names who did it),
or ``NOT CAUGHT``. Attackers use the doors an insider has: the services (as a
shell would), raw SQL as the database owner or on the SQLite file (triggers
dropped where they stand in the way), and the runtime database role.
"""

from __future__ import annotations

from redteam.context import Attack, Context
from redteam.plays_gate import (
    approval_delete,
    canary_99,
    change_reinsert,
    cli_as_another,
    confusable_reviewer,
    default_agent_switch,
    dev_zero_import,
    gating_set_swap,
    nul_prompt,
    runtime_role_erases_early,
    runtime_role_rewrites,
    sock_puppet_reviewer,
)
from redteam.plays_record import (
    archive_by_hand,
    archive_forged,
    archive_marked_only,
    audit_delete_tail,
    audit_rewrite,
    audit_truncate,
    checkpoints_deleted,
    control,
    junk_in_the_record,
)
from redteam.plays_sql import (
    sql_default_switch,
    sql_forged_approval,
    sql_gating_relabel,
    sql_gating_set_dropped,
    sql_password_reset,
    sql_pin_move,
    sql_policy_lowered,
    sql_reviewer_for_a_moment,
    sql_superuser,
)

__all__ = ["ATTACKS", "Context"]

ATTACKS: list[Attack] = [
    Attack("(control: no attack)", control),
    Attack("truncate the audit log", audit_truncate),
    Attack("delete the tail, rewind the head", audit_delete_tail),
    Attack("rewrite history, re-hash the rest", audit_rewrite),
    Attack("delete approvals", approval_delete),
    Attack("delete an approved request, re-insert it", change_reinsert),
    Attack("runtime role wipes the record", runtime_role_rewrites, backends=("postgres",)),
    Attack("sock-puppet reviewer", sock_puppet_reviewer),
    Attack("approve as bob with --as, holding alice's token", cli_as_another),
    Attack("99 % canary of the regressed v2", canary_99),
    Attack("switch the default agent", default_agent_switch),
    Attack("swap the gating set after approval", gating_set_swap),
    Attack("SQL: move the pin to v2", sql_pin_move),
    Attack("SQL: switch the default agent", sql_default_switch),
    Attack("SQL: make alice a superuser", sql_superuser),
    Attack("SQL: lift the canary evidence threshold", sql_policy_lowered),
    Attack("SQL: drop the gating set", sql_gating_set_dropped),
    Attack("SQL: forge bob's approval, then apply", sql_forged_approval),
    Attack("SQL: reviewer for a moment", sql_reviewer_for_a_moment),
    Attack("SQL: reset bob's password", sql_password_reset),
    Attack("SQL: relabel the gating tickets", sql_gating_relabel),
    Attack("junk checkpoint line", junk_in_the_record),
    Attack("delete the checkpoint file", checkpoints_deleted),
    Attack("archive a sealed segment by hand in SQL", archive_by_hand),
    Attack("forge a segment row, delete its events", archive_forged),
    Attack("mark a sealed segment archived in SQL, keep its events", archive_marked_only),
    Attack("runtime role erases text and history early", runtime_role_erases_early, backends=("postgres",)),
    Attack("a reviewer named b\u043eb (Cyrillic o)", confusable_reviewer),
    Attack("NUL byte in a system prompt", nul_prompt),
    Attack("testset import /dev/zero", dev_zero_import),
]
