"""The evals app's records refuse UPDATE and DELETE in the database, as promptctl's do (0002, 0006).

The ORM already refuses (``ImmutableRecord``); these triggers refuse a raw
statement on the app's own connection too, on both databases. PostgreSQL's
runtime role holds no UPDATE, DELETE or TRUNCATE on these tables either
(``promptctl db roles``). Whoever may drop a trigger (the tables' owner, the
SQLite file's holder) is not stopped: that is for the audit chain and its
checkpoints to name. A later migration that rebuilds one of these tables on
SQLite (altering a column) drops its triggers and must create them again.
"""

from django.db import migrations

REFUSED = {
    "evals_testsetversion": "a test set version is immutable",
    "evals_testcase": "test cases are immutable",
    "evals_evalresult": "eval results are immutable",
    "evals_comparison": "comparisons are evidence and immutable",
}


def _postgresql() -> list[str]:
    return [
        f"""CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION promptctl_refuse_row_change('{why}')"""
        for table, why in REFUSED.items()
    ]


def _sqlite() -> list[str]:
    statements = []
    for table, why in REFUSED.items():
        for action in ("UPDATE", "DELETE"):
            statements.append(
                f"""CREATE TRIGGER {table}_{action.lower()}_refused BEFORE {action} ON {table}
                    BEGIN SELECT RAISE(ABORT, 'promptctl: {why} ({action} on {table} refused)'); END"""
            )
    return statements


def _postgresql_reverse() -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}" for table in REFUSED]


def _sqlite_reverse() -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {table}_{action}_refused" for table in REFUSED for action in ("update", "delete")]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        vendor = schema_editor.connection.vendor
        builder = statements_by_vendor.get(vendor)
        if builder is None:
            raise RuntimeError(f"the record guards are written for PostgreSQL and SQLite, not {vendor}")
        for statement in builder():
            schema_editor.execute(statement, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("evals", "0003_gate_inputs"), ("promptctl", "0002_database_guards")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": _postgresql, "sqlite": _sqlite}),
            _run({"postgresql": _postgresql_reverse, "sqlite": _sqlite_reverse}),
        ),
    ]
