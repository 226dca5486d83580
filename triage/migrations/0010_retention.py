"""Retention: a ``redacted_at`` stamp, and request-log guards that allow exactly one kind of UPDATE, the redaction.

The request log stays immutable (0006_record_guards) except for one change,
made once per row by ``triage.services.retention``: the ticket's text
(``subject``, ``body``, ``reply``, ``request_key``) set to empty and
``redacted_at`` stamped, every other column unchanged. The guard checks
exactly that, column by column (the column list is this migration's model
state, so a column a later migration adds must be added to the guard there);
any other UPDATE, a second redaction, or a DELETE is refused as before.
Both triggers are dropped and created again, so this also restores them if an
earlier migration rebuilt the table on SQLite.
"""

from django.db import migrations, models

TABLE = "triage_triagerequest"
WHY = "the triage request log is immutable"
TEXT_COLUMNS = ("subject", "body", "reply", "request_key")
STAMP = "redacted_at"


def _kept_columns(apps) -> list[str]:
    model = apps.get_model("triage", "TriageRequest")
    columns = [field.column for field in model._meta.concrete_fields]
    return [column for column in columns if column not in (*TEXT_COLUMNS, STAMP)]


def _redaction_condition(apps, vendor: str) -> str:
    """True exactly when an UPDATE is the redaction: text emptied, stamp set once, everything else unchanged."""
    same = "IS NOT DISTINCT FROM" if vendor == "postgresql" else "IS"
    parts = [f"OLD.{STAMP} IS NULL", f"NEW.{STAMP} IS NOT NULL"]
    parts += [f"NEW.{column} = ''" for column in TEXT_COLUMNS]
    parts += [f"NEW.{column} {same} OLD.{column}" for column in _kept_columns(apps)]
    return " AND ".join(parts)


def _postgresql(apps) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {TABLE}_immutable ON {TABLE}",
        f"DROP TRIGGER IF EXISTS {TABLE}_update_guard ON {TABLE}",
        f"DROP TRIGGER IF EXISTS {TABLE}_delete_refused ON {TABLE}",
        f"""CREATE TRIGGER {TABLE}_delete_refused BEFORE DELETE ON {TABLE}
            FOR EACH ROW EXECUTE FUNCTION promptctl_refuse_row_change('{WHY}')""",
        f"""CREATE TRIGGER {TABLE}_update_guard BEFORE UPDATE ON {TABLE}
            FOR EACH ROW WHEN (NOT ({_redaction_condition(apps, "postgresql")}))
            EXECUTE FUNCTION promptctl_refuse_row_change('{WHY} (only retention may empty its text, once)')""",
    ]


def _sqlite(apps) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {TABLE}_update_refused",
        f"DROP TRIGGER IF EXISTS {TABLE}_delete_refused",
        f"""CREATE TRIGGER {TABLE}_delete_refused BEFORE DELETE ON {TABLE}
            BEGIN SELECT RAISE(ABORT, 'promptctl: {WHY} (DELETE on {TABLE} refused)'); END""",
        f"""CREATE TRIGGER {TABLE}_update_refused BEFORE UPDATE ON {TABLE}
            WHEN NOT ({_redaction_condition(apps, "sqlite")})
            BEGIN SELECT RAISE(ABORT, 'promptctl: {WHY} (UPDATE on {TABLE} refused; only retention may empty its text, once)'); END""",
    ]


def _postgresql_reverse(apps) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {TABLE}_update_guard ON {TABLE}",
        f"DROP TRIGGER IF EXISTS {TABLE}_delete_refused ON {TABLE}",
        f"""CREATE TRIGGER {TABLE}_immutable BEFORE UPDATE OR DELETE ON {TABLE}
            FOR EACH ROW EXECUTE FUNCTION promptctl_refuse_row_change('{WHY}')""",
    ]


def _sqlite_reverse(apps) -> list[str]:
    statements = [
        f"DROP TRIGGER IF EXISTS {TABLE}_update_refused",
        f"DROP TRIGGER IF EXISTS {TABLE}_delete_refused",
    ]
    for action in ("UPDATE", "DELETE"):
        statements.append(
            f"""CREATE TRIGGER {TABLE}_{action.lower()}_refused BEFORE {action} ON {TABLE}
                BEGIN SELECT RAISE(ABORT, 'promptctl: {WHY} ({action} on {TABLE} refused)'); END"""
        )
    return statements


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        vendor = schema_editor.connection.vendor
        builder = statements_by_vendor.get(vendor)
        if builder is None:
            raise RuntimeError(f"the record guards are written for PostgreSQL and SQLite, not {vendor}")
        for statement in builder(apps):
            schema_editor.execute(statement, params=None)

    return run


def _stamp() -> models.DateTimeField:
    return models.DateTimeField(
        blank=True, editable=False, help_text="when retention emptied the ticket's text", null=True
    )


class Migration(migrations.Migration):
    dependencies = [("triage", "0009_scale")]

    operations = [
        migrations.AddField(model_name="triagerequest", name="redacted_at", field=_stamp()),
        migrations.AddField(model_name="triagejob", name="redacted_at", field=_stamp()),
        migrations.AddField(model_name="historicaltriagejob", name="redacted_at", field=_stamp()),
        migrations.RunPython(
            _run({"postgresql": _postgresql, "sqlite": _sqlite}),
            _run({"postgresql": _postgresql_reverse, "sqlite": _sqlite_reverse}),
        ),
    ]
