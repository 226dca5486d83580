"""The gate's own inputs under change control: the canary evidence threshold and the ``route`` kind.

- ``Agent.canary_evidence_above_percent`` (default 10): a production canary
  above this share needs the same eval evidence as a promotion.
- ``ChangeRequest.kind`` accepts ``route`` (make the agent the default of the
  triage API), so the database constraint ``changerequest_kind_valid`` does too.
  The pin triggers of 0002 stay as they are: they accept a pin move only from
  a promote, rollback or canary, so a ``route`` request can never move a pin.

On SQLite, adding a column with a default or changing a check constraint
rebuilds the table, and dropping the old table drops its triggers (0002's
guards, and any later ones); and SQLite refuses the rebuild's rename while a
trigger on another table names the dropped one. ``_triggers_keep`` sets every
trigger aside and ``_triggers_restore`` creates them again as they were, so
the guards survive whatever migration added them.
"""

from django.conf import settings
from django.db import migrations, models

_KEPT: dict[str, list[tuple[str, str]]] = {}


def _triggers_keep(apps, schema_editor):
    """SQLite: set every trigger aside (a table rebuild fails while a trigger names the dropped table)."""
    connection = schema_editor.connection
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND sql IS NOT NULL")
        kept = list(cursor.fetchall())
    _KEPT[connection.alias] = kept
    for name, _sql in kept:
        schema_editor.execute(f'DROP TRIGGER IF EXISTS "{name}"', params=None)


def _triggers_restore(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "sqlite":
        return
    for _name, sql in _KEPT.pop(connection.alias, []):
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("promptctl", "0006_delete_guards"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(_triggers_keep, _triggers_restore),
        migrations.RemoveConstraint(model_name="changerequest", name="changerequest_kind_valid"),
        migrations.AddField(
            model_name="agent",
            name="canary_evidence_above_percent",
            field=models.PositiveSmallIntegerField(
                default=10,
                help_text="a production canary above this share of traffic needs the same eval evidence as a promotion",
            ),
        ),
        migrations.AddField(
            model_name="historicalagent",
            name="canary_evidence_above_percent",
            field=models.PositiveSmallIntegerField(
                default=10,
                help_text="a production canary above this share of traffic needs the same eval evidence as a promotion",
            ),
        ),
        migrations.AlterField(
            model_name="changerequest",
            name="kind",
            field=models.CharField(
                choices=[
                    ("promote", "promote"),
                    ("rollback", "rollback"),
                    ("canary", "canary"),
                    ("route", "make default agent"),
                ],
                editable=False,
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="historicalchangerequest",
            name="kind",
            field=models.CharField(
                choices=[
                    ("promote", "promote"),
                    ("rollback", "rollback"),
                    ("canary", "canary"),
                    ("route", "make default agent"),
                ],
                editable=False,
                max_length=16,
            ),
        ),
        migrations.AddConstraint(
            model_name="agent",
            constraint=models.CheckConstraint(
                condition=models.Q(("canary_evidence_above_percent__lte", 99)),
                name="agent_canary_evidence_percent_range",
                violation_error_message="The canary evidence threshold is a share of traffic: 0 to 99 percent.",
            ),
        ),
        migrations.AddConstraint(
            model_name="changerequest",
            constraint=models.CheckConstraint(
                condition=models.Q(("kind__in", ["promote", "rollback", "canary", "route"])),
                name="changerequest_kind_valid",
            ),
        ),
        migrations.RunPython(_triggers_restore, _triggers_keep),
    ]
