"""Delete guards on the record's tables, so a row of the record cannot be removed and written again.

What each guard stops:

- Versions, approvals and audit events refuse DELETE on both databases (0002
  already refused it on PostgreSQL; on SQLite it refused only UPDATE). Without
  this, SQLite let an approval be deleted, and let an approved change request
  be deleted and inserted again as ``pending`` with another target: setting it
  ``approved`` then counted the old approvals (given for the old target), and
  applying it moved the pin to a version nobody approved.
- Change requests and pins refuse DELETE on SQLite as on PostgreSQL (0002), in
  every state: a request is part of the record from the moment it is filed
  (its approvals point at it), and a pin moves only by a new request.
- The audit chain head refuses DELETE on both: the appender would rebuild it
  from the last surviving event, and events cut from the end would go unseen.

What they cannot stop: whoever may drop a trigger. On PostgreSQL that is the
tables' owner (the migration role) or a superuser; the app connects as a
runtime role that owns nothing and holds no TRUNCATE, UPDATE or DELETE on
these tables (``promptctl db roles``, docs/OPERATIONS.md "Database roles"),
so the privilege is the guard against TRUNCATE, which fires no row trigger.
On SQLite anyone who can open the file can drop a trigger, or replace the
file. Those cases are detected, not refused: the keyed audit chain and its
checkpoints name what changed.

SQLite's test flush deletes rows, which these triggers refuse: the test suite
restores each database from a copy taken after migrating instead
(``tests/database_support.py``), so the flush finds the guarded tables empty.
PostgreSQL's flush is a TRUNCATE, which fires no row trigger.
"""

from django.db import migrations

DELETE_REFUSED = {
    "promptctl_agentversion": "agent versions are immutable",
    "promptctl_approval": "decisions on change requests are final",
    "promptctl_auditevent": "audit events are append-only",
    "promptctl_changerequest": "a change request is part of the record",
    "promptctl_pin": "pins move only by change requests",
    "promptctl_auditchainhead": "the audit chain head is kept",
}

# 0002 already refuses DELETE on PostgreSQL for every table above except the chain head.
POSTGRESQL_NEW = ["promptctl_auditchainhead"]


def _postgresql() -> list[str]:
    return [
        f"""CREATE TRIGGER {table}_undeletable BEFORE DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION promptctl_refuse_row_change('{DELETE_REFUSED[table]}')"""
        for table in POSTGRESQL_NEW
    ]


def _sqlite() -> list[str]:
    return [
        f"""CREATE TRIGGER {table}_undeletable BEFORE DELETE ON {table}
            BEGIN SELECT RAISE(ABORT, 'promptctl: {why} (DELETE on {table} refused)'); END"""
        for table, why in DELETE_REFUSED.items()
    ]


def _postgresql_reverse() -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {table}_undeletable ON {table}" for table in POSTGRESQL_NEW]


def _sqlite_reverse() -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {table}_undeletable" for table in DELETE_REFUSED]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        vendor = schema_editor.connection.vendor
        builder = statements_by_vendor.get(vendor)
        if builder is None:
            raise RuntimeError(f"promptctl's delete guards are written for PostgreSQL and SQLite, not {vendor}")
        for statement in builder():
            schema_editor.execute(statement, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("promptctl", "0005_audit_keyed")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": _postgresql, "sqlite": _sqlite}),
            _run({"postgresql": _postgresql_reverse, "sqlite": _sqlite_reverse}),
        ),
    ]
