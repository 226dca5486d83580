"""Keyed audit chain: every event names the id of the audit key that MACed it.

Events already written keep ``key_id = ""``: they carry the plain SHA-256 they
were written with and verify as the legacy prefix (``promptctl.audit.macs``).

On SQLite, adding a NOT NULL column rebuilds the table, and dropping the old
table drops its triggers; the append-only trigger of 0002 is made again after
the rebuild (and again after the reverse rebuild), with the same text.
"""

from django.db import migrations, models

SQLITE_IMMUTABLE = """CREATE TRIGGER IF NOT EXISTS promptctl_auditevent_immutable BEFORE UPDATE ON promptctl_auditevent
    BEGIN SELECT RAISE(ABORT, 'promptctl: audit events are append-only'); END"""


def _sqlite_trigger_restore(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(SQLITE_IMMUTABLE, params=None)


class Migration(migrations.Migration):
    dependencies = [("promptctl", "0004_constraint_messages")]

    operations = [
        # Reversed last: restores the trigger after RemoveField rebuilds the table.
        migrations.RunPython(migrations.RunPython.noop, _sqlite_trigger_restore),
        migrations.AddField(
            model_name="auditevent",
            name="key_id",
            field=models.CharField(
                blank=True,
                default="",
                editable=False,
                help_text="the audit key's id; empty: before keying",
                max_length=32,
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="hash",
            field=models.CharField(
                editable=False,
                help_text="HMAC-SHA256 under key_id; plain SHA-256 if key_id is empty",
                max_length=64,
                unique=True,
            ),
        ),
        migrations.RunPython(_sqlite_trigger_restore, migrations.RunPython.noop),
    ]
