"""The canonical configuration hash: a new column on versions, computed for every stored version.

``config_sha256`` was taken over the SDK's whole dump, so an SDK upgrade or a
new server field would change it for every version and ``agent sync`` would
flag them all. ``config_canonical_sha256`` covers only the behaviour-defining
fields (``managed_agents.confighash``) and is what drift checks compare; the
old column stays as it was, for the record (audit events and change requests
filed before this migration quote it).

Versions refuse UPDATE (0002's ``promptctl_agentversion_immutable`` trigger),
so the fill drops that one trigger, writes the new column from each row's
stored ``config``, and creates the trigger again with the same definition,
inside this migration's transaction. The column is nullable so SQLite adds it
with ALTER TABLE instead of rebuilding the table (a rebuild drops its triggers).
"""

from django.db import migrations, models

from managed_agents.confighash import config_sha256

TABLE = "promptctl_agentversion"
WHY = "agent versions are immutable"

GUARD_DROP = {
    "postgresql": f"DROP TRIGGER IF EXISTS {TABLE}_immutable ON {TABLE}",
    "sqlite": f"DROP TRIGGER IF EXISTS {TABLE}_immutable",
}
GUARD_CREATE = {
    "postgresql": f"""CREATE TRIGGER {TABLE}_immutable BEFORE UPDATE OR DELETE ON {TABLE}
        FOR EACH ROW EXECUTE FUNCTION promptctl_refuse_row_change('{WHY}')""",
    "sqlite": f"""CREATE TRIGGER {TABLE}_immutable BEFORE UPDATE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, 'promptctl: {WHY}'); END""",
}


def _fill(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor not in GUARD_CREATE:
        raise RuntimeError(f"promptctl's database guards are written for PostgreSQL and SQLite, not {vendor}")
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT id, config FROM {TABLE}")
        rows = cursor.fetchall()
    if not rows:
        return
    AgentVersion = apps.get_model("promptctl", "AgentVersion")
    field = AgentVersion._meta.get_field("config")
    schema_editor.execute(GUARD_DROP[vendor], params=None)
    with schema_editor.connection.cursor() as cursor:
        for pk, raw in rows:
            config = field.from_db_value(raw, None, schema_editor.connection) if isinstance(raw, str) else raw
            cursor.execute(
                f"UPDATE {TABLE} SET config_canonical_sha256 = %s WHERE id = %s", [config_sha256(config or {}), pk]
            )
    schema_editor.execute(GUARD_CREATE[vendor], params=None)


class Migration(migrations.Migration):
    dependencies = [("promptctl", "0009_notifications")]

    operations = [
        migrations.AddField(
            model_name="agentversion",
            name="config_canonical_sha256",
            field=models.CharField(
                editable=False,
                help_text="SHA-256 of the behaviour-defining fields (managed_agents.confighash); what drift checks compare",
                max_length=64,
                null=True,
            ),
        ),
        migrations.AlterField(
            model_name="agentversion",
            name="config_sha256",
            field=models.CharField(
                editable=False,
                help_text="SHA-256 of the whole stored config; moves with SDK upgrades",
                max_length=64,
            ),
        ),
        migrations.RunPython(_fill, migrations.RunPython.noop),
    ]
