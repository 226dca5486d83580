"""Version intents (promptctl.models.intents): the note version_create writes before its remote call."""

import django.db.models.deletion
import django.utils.timezone
import simple_history.models
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("promptctl", "0010_config_canonical")]

    operations = [
        migrations.CreateModel(
            name="HistoricalVersionIntent",
            fields=[
                ("id", models.BigIntegerField(auto_created=True, blank=True, db_index=True, verbose_name="ID")),
                (
                    "marker",
                    models.CharField(
                        db_index=True,
                        editable=False,
                        help_text="the client-generated marker the update carries",
                        max_length=64,
                    ),
                ),
                (
                    "base_version",
                    models.BigIntegerField(editable=False, help_text="the version the conditional update was made on"),
                ),
                ("started_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ("finished_at", models.DateTimeField(blank=True, editable=False, null=True)),
                (
                    "outcome",
                    models.CharField(
                        choices=[
                            ("open", "in flight or unresolved"),
                            ("made", "the server made its version"),
                            ("not_made", "the server made no version for it"),
                        ],
                        default="open",
                        editable=False,
                        max_length=16,
                    ),
                ),
                (
                    "version_number",
                    models.BigIntegerField(
                        blank=True, editable=False, help_text="the server version it made, once known", null=True
                    ),
                ),
                ("history_id", models.AutoField(primary_key=True, serialize=False)),
                ("history_date", models.DateTimeField(db_index=True)),
                ("history_change_reason", models.CharField(max_length=100, null=True)),
                (
                    "history_type",
                    models.CharField(choices=[("+", "Created"), ("~", "Changed"), ("-", "Deleted")], max_length=1),
                ),
                (
                    "agent",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        editable=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="promptctl.agent",
                    ),
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
            ],
            options={
                "verbose_name": "historical version intent",
                "verbose_name_plural": "historical version intents",
                "ordering": ("-history_date", "-history_id"),
                "get_latest_by": ("history_date", "history_id"),
            },
            bases=(simple_history.models.HistoricalChanges, models.Model),
        ),
        migrations.CreateModel(
            name="VersionIntent",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "marker",
                    models.CharField(
                        editable=False,
                        help_text="the client-generated marker the update carries",
                        max_length=64,
                        unique=True,
                    ),
                ),
                (
                    "base_version",
                    models.BigIntegerField(editable=False, help_text="the version the conditional update was made on"),
                ),
                ("started_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ("finished_at", models.DateTimeField(blank=True, editable=False, null=True)),
                (
                    "outcome",
                    models.CharField(
                        choices=[
                            ("open", "in flight or unresolved"),
                            ("made", "the server made its version"),
                            ("not_made", "the server made no version for it"),
                        ],
                        default="open",
                        editable=False,
                        max_length=16,
                    ),
                ),
                (
                    "version_number",
                    models.BigIntegerField(
                        blank=True, editable=False, help_text="the server version it made, once known", null=True
                    ),
                ),
                (
                    "agent",
                    models.ForeignKey(
                        editable=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="version_intents",
                        to="promptctl.agent",
                    ),
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
            ],
            options={
                "ordering": ["-started_at"],
                "indexes": [models.Index(fields=["agent", "outcome"], name="versionintent_agent_outcome")],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("outcome__in", ["open", "made", "not_made"])),
                        name="versionintent_outcome_valid",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(
                                ("finished_at__isnull", True), ("outcome", "open"), ("version_number__isnull", True)
                            ),
                            models.Q(
                                ("finished_at__isnull", False),
                                ("outcome", "made"),
                                ("version_number__isnull", False),
                            ),
                            models.Q(
                                ("finished_at__isnull", False),
                                ("outcome", "not_made"),
                                ("version_number__isnull", True),
                            ),
                            _connector="OR",
                        ),
                        name="versionintent_outcome_consistent",
                    ),
                ],
            },
        ),
    ]
