"""Personal access tokens, and the token an audit event came through.

``AuditEvent.token_ref`` is empty for every event written so far, and the MAC
covers it only when set (``promptctl.audit.macs``), so existing events verify
unchanged.

On SQLite, adding a NOT NULL column rebuilds the table, and dropping the old
table drops its triggers; the append-only and delete guards of 0002 and 0006
are made again after the rebuild (and after the reverse rebuild), same text.
"""

import django.db.models.deletion
import django.utils.timezone
import simple_history.models
from django.conf import settings
from django.db import migrations, models

SQLITE_GUARDS = [
    """CREATE TRIGGER IF NOT EXISTS promptctl_auditevent_immutable BEFORE UPDATE ON promptctl_auditevent
    BEGIN SELECT RAISE(ABORT, 'promptctl: audit events are append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS promptctl_auditevent_undeletable BEFORE DELETE ON promptctl_auditevent
            BEGIN SELECT RAISE(ABORT, 'promptctl: audit events are append-only (DELETE on promptctl_auditevent refused)'); END""",
]


def _sqlite_guards_restore(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_GUARDS:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("promptctl", "0007_gate_inputs"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # Reversed last: restores the guards after RemoveField rebuilds the table.
        migrations.RunPython(migrations.RunPython.noop, _sqlite_guards_restore),
        migrations.AddField(
            model_name="auditevent",
            name="token_ref",
            field=models.CharField(
                blank=True,
                default="",
                editable=False,
                help_text="the personal token the change came through (id:prefix); empty: none (operator, web session)",
                max_length=40,
            ),
        ),
        migrations.RunPython(_sqlite_guards_restore, migrations.RunPython.noop),
        migrations.CreateModel(
            name="PersonalToken",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(help_text="what the token is for, e.g. laptop or ci", max_length=100)),
                (
                    "prefix",
                    models.CharField(
                        db_index=True,
                        editable=False,
                        help_text="the token's first characters, to recognise it by",
                        max_length=16,
                    ),
                ),
                ("key_hash", models.CharField(editable=False, max_length=64, unique=True)),
                ("read_only", models.BooleanField(default=False, editable=False, help_text="refused on every write")),
                (
                    "expires_at",
                    models.DateTimeField(blank=True, editable=False, help_text="empty: never expires", null=True),
                ),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ("revoked_at", models.DateTimeField(blank=True, editable=False, null=True)),
                (
                    "last_used_at",
                    models.DateTimeField(blank=True, editable=False, help_text="to within a minute", null=True),
                ),
                (
                    "created_by",
                    models.ForeignKey(
                        editable=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "revoked_by",
                    models.ForeignKey(
                        blank=True,
                        editable=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        editable=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="personal_tokens",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "personal token",
                "ordering": ["user_id", "name"],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("revoked_at__isnull", True), ("revoked_by__isnull", True)),
                            models.Q(("revoked_at__isnull", False), ("revoked_by__isnull", False)),
                            _connector="OR",
                        ),
                        name="personaltoken_revoked_has_time_and_actor",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("key_hash__regex", "^[0-9a-f]{64}$")),
                        name="personaltoken_hash_is_sha256_hex",
                    ),
                    models.UniqueConstraint(
                        condition=models.Q(("revoked_at__isnull", True)),
                        fields=("user", "name"),
                        name="personaltoken_live_name_unique_per_user",
                    ),
                ],
            },
        ),
        migrations.CreateModel(
            name="HistoricalPersonalToken",
            fields=[
                ("id", models.BigIntegerField(auto_created=True, blank=True, db_index=True, verbose_name="ID")),
                ("name", models.CharField(help_text="what the token is for, e.g. laptop or ci", max_length=100)),
                (
                    "prefix",
                    models.CharField(
                        db_index=True,
                        editable=False,
                        help_text="the token's first characters, to recognise it by",
                        max_length=16,
                    ),
                ),
                ("read_only", models.BooleanField(default=False, editable=False, help_text="refused on every write")),
                (
                    "expires_at",
                    models.DateTimeField(blank=True, editable=False, help_text="empty: never expires", null=True),
                ),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ("revoked_at", models.DateTimeField(blank=True, editable=False, null=True)),
                ("history_id", models.AutoField(primary_key=True, serialize=False)),
                ("history_date", models.DateTimeField(db_index=True)),
                ("history_change_reason", models.CharField(max_length=100, null=True)),
                (
                    "history_type",
                    models.CharField(choices=[("+", "Created"), ("~", "Changed"), ("-", "Deleted")], max_length=1),
                ),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        editable=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "history_user",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "revoked_by",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        editable=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        editable=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "historical personal token",
                "verbose_name_plural": "historical personal tokens",
                "ordering": ("-history_date", "-history_id"),
                "get_latest_by": ("history_date", "history_id"),
            },
            bases=(simple_history.models.HistoricalChanges, models.Model),
        ),
    ]
