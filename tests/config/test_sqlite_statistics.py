"""SQLite keeps its planner statistics: a connection runs ``PRAGMA optimize`` as it closes (config/sqlite/base.py)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from promptctl.audit import audit_record
from promptctl.models import AuditEvent


def _statistics(table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE name = 'sqlite_stat1'")
        if cursor.fetchone() is None:
            return []
        cursor.execute("SELECT idx FROM sqlite_stat1 WHERE tbl = %s", [table])
        return [name for (name,) in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
def test_a_closing_connection_analyzes_the_tables_its_queries_needed():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's planner statistics; PostgreSQL's autovacuum analyzes on its own")
    for number in range(30):
        with transaction.atomic():
            audit_record(actor=None, verb=f"test.note{number % 3}", object_type="test", object_id=str(number))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # makes sqlite_stat1; emptied next, so no table has statistics
        cursor.execute("DELETE FROM sqlite_stat1")
    connection.close()
    assert _statistics("promptctl_auditevent") == []

    list(AuditEvent.objects.filter(verb="test.note1").order_by("-sequence")[:5])
    connection.close()
    assert "auditevent_verb" in _statistics("promptctl_auditevent")
