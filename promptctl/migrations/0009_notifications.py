"""Reviewer notifications: webhooks (with their history, the secret left out) and their deliveries."""

import django.db.models.deletion
import django.utils.timezone
import simple_history.models
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("promptctl", "0008_personal_tokens"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="HistoricalWebhook",
            fields=[
                ("id", models.BigIntegerField(auto_created=True, blank=True, db_index=True, verbose_name="ID")),
                ("url", models.URLField(help_text="http(s) URL that receives a POST per event", max_length=500)),
                (
                    "events",
                    models.JSONField(blank=True, default=list, help_text="event names to send; empty: every event"),
                ),
                (
                    "format",
                    models.CharField(
                        choices=[("json", "JSON event"), ("slack", "Slack-compatible {text}")],
                        default="json",
                        max_length=8,
                    ),
                ),
                ("active", models.BooleanField(default=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
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
                        help_text="empty: every agent",
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="promptctl.agent",
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
                "verbose_name": "historical webhook",
                "verbose_name_plural": "historical webhooks",
                "ordering": ("-history_date", "-history_id"),
                "get_latest_by": ("history_date", "history_id"),
            },
            bases=(simple_history.models.HistoricalChanges, models.Model),
        ),
        migrations.CreateModel(
            name="Webhook",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("url", models.URLField(help_text="http(s) URL that receives a POST per event", max_length=500)),
                (
                    "secret",
                    models.CharField(editable=False, help_text="HMAC-SHA256 key; shown once when made", max_length=100),
                ),
                (
                    "events",
                    models.JSONField(blank=True, default=list, help_text="event names to send; empty: every event"),
                ),
                (
                    "format",
                    models.CharField(
                        choices=[("json", "JSON event"), ("slack", "Slack-compatible {text}")],
                        default="json",
                        max_length=8,
                    ),
                ),
                ("active", models.BooleanField(default=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                (
                    "agent",
                    models.ForeignKey(
                        blank=True,
                        help_text="empty: every agent",
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="promptctl.agent",
                    ),
                ),
            ],
            options={"ordering": ["id"]},
        ),
        migrations.CreateModel(
            name="WebhookDelivery",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("event", models.CharField(editable=False, max_length=64)),
                ("payload", models.JSONField(editable=False)),
                ("attempts", models.PositiveSmallIntegerField(default=0, editable=False)),
                (
                    "status",
                    models.CharField(
                        choices=[("pending", "pending"), ("delivered", "delivered"), ("failed", "failed")],
                        default="pending",
                        editable=False,
                        max_length=16,
                    ),
                ),
                ("last_response_code", models.PositiveSmallIntegerField(blank=True, editable=False, null=True)),
                (
                    "last_error",
                    models.CharField(blank=True, editable=False, help_text="response excerpt or error", max_length=500),
                ),
                ("next_attempt_at", models.DateTimeField(blank=True, editable=False, null=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ("delivered_at", models.DateTimeField(blank=True, editable=False, null=True)),
                (
                    "webhook",
                    models.ForeignKey(
                        editable=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="deliveries",
                        to="promptctl.webhook",
                    ),
                ),
            ],
            options={"ordering": ["-created_at", "-id"]},
        ),
        migrations.AddConstraint(
            model_name="webhook",
            constraint=models.CheckConstraint(
                condition=models.Q(("format__in", ["json", "slack"])), name="webhook_format_valid"
            ),
        ),
        migrations.AddIndex(
            model_name="webhookdelivery",
            index=models.Index(fields=["status", "next_attempt_at"], name="webhookdelivery_due"),
        ),
        migrations.AddConstraint(
            model_name="webhookdelivery",
            constraint=models.CheckConstraint(
                condition=models.Q(("status__in", ["pending", "delivered", "failed"])),
                name="webhookdelivery_status_valid",
            ),
        ),
    ]
