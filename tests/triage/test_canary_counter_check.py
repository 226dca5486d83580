"""``audit verify`` names a canary counter changed outside promptctl (the canary limits read the counter, not the log)."""

import pytest
from django.db import connection

from promptctl import selectors
from tests.triage.support import People, ProductionAgent
from triage.record_checks import canary_counters_match_the_log
from triage.selectors import canary_stats, canary_stats_counted


@pytest.mark.django_db(transaction=True)
def test_a_counter_rewritten_in_sql_is_named_by_audit_verify(emulator):
    from triage.models import CanaryCounter

    production = ProductionAgent(People(), default=False)
    assert list(canary_counters_match_the_log()) == []
    counter = CanaryCounter.objects.create(agent=production.agent, pin_revision=7, requests=3, invalid=0, errors=0)
    with connection.cursor() as cursor:  # the insider hides the canary's failures: zero the errors by hand
        cursor.execute(f"UPDATE {CanaryCounter._meta.db_table} SET requests = 50 WHERE id = %s", [counter.pk])
    assert canary_stats(agent_id=production.agent.pk, pin_revision=7) != canary_stats_counted(
        agent_id=production.agent.pk, pin_revision=7
    )
    problems = list(canary_counters_match_the_log())
    assert len(problems) == 1 and "pin revision 7" in problems[0] and "outside promptctl" in problems[0]
    verification = selectors.audit_chain_verify()
    assert not verification.ok and "canary counter" in verification.message
