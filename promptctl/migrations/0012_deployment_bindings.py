# Deployment bindings (promptctl.models.deployments): a deployment follows one agent's channel pin.

import django.db.models.deletion
import django.utils.timezone
import simple_history.models
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("promptctl", "0011_version_intents")]

    operations = [
        migrations.CreateModel(
            name="HistoricalDeploymentBinding",
            fields=[
                ("id", models.BigIntegerField(auto_created=True, blank=True, db_index=True, verbose_name="ID")),
                ("channel", models.SlugField(default="production", editable=False)),
                (
                    "deployment_id",
                    models.CharField(
                        db_index=True, editable=False, help_text="the deployment's id on Managed Agents", max_length=200
                    ),
                ),
                (
                    "name",
                    models.CharField(
                        blank=True, editable=False, help_text="the deployment's name when last read", max_length=200
                    ),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("in_step", "in step with the pin"),
                            ("behind", "an apply could not move it"),
                            ("unpinned", "follows latest (not pinned yet)"),
                            ("drifted", "changed outside promptctl"),
                        ],
                        default="unpinned",
                        editable=False,
                        max_length=16,
                    ),
                ),
                (
                    "problem",
                    models.TextField(
                        blank=True, editable=False, help_text="what is wrong with it, in words; empty when in step"
                    ),
                ),
                (
                    "set_version",
                    models.BigIntegerField(
                        blank=True,
                        editable=False,
                        help_text="the version promptctl last put on the deployment",
                        null=True,
                    ),
                ),
                (
                    "seen_version",
                    models.BigIntegerField(
                        blank=True,
                        editable=False,
                        help_text="the version last read on the server (empty: follows latest)",
                        null=True,
                    ),
                ),
                (
                    "seen_status",
                    models.CharField(
                        blank=True,
                        editable=False,
                        help_text="active, paused, archived or missing, when last read",
                        max_length=16,
                    ),
                ),
                ("seen_at", models.DateTimeField(blank=True, editable=False, null=True)),
                ("bound_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
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
                    "bound_by",
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
                "verbose_name": "historical deployment binding",
                "verbose_name_plural": "historical deployment bindings",
                "ordering": ("-history_date", "-history_id"),
                "get_latest_by": ("history_date", "history_id"),
            },
            bases=(simple_history.models.HistoricalChanges, models.Model),
        ),
        migrations.CreateModel(
            name="DeploymentBinding",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("channel", models.SlugField(default="production", editable=False)),
                (
                    "deployment_id",
                    models.CharField(
                        editable=False, help_text="the deployment's id on Managed Agents", max_length=200, unique=True
                    ),
                ),
                (
                    "name",
                    models.CharField(
                        blank=True, editable=False, help_text="the deployment's name when last read", max_length=200
                    ),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("in_step", "in step with the pin"),
                            ("behind", "an apply could not move it"),
                            ("unpinned", "follows latest (not pinned yet)"),
                            ("drifted", "changed outside promptctl"),
                        ],
                        default="unpinned",
                        editable=False,
                        max_length=16,
                    ),
                ),
                (
                    "problem",
                    models.TextField(
                        blank=True, editable=False, help_text="what is wrong with it, in words; empty when in step"
                    ),
                ),
                (
                    "set_version",
                    models.BigIntegerField(
                        blank=True,
                        editable=False,
                        help_text="the version promptctl last put on the deployment",
                        null=True,
                    ),
                ),
                (
                    "seen_version",
                    models.BigIntegerField(
                        blank=True,
                        editable=False,
                        help_text="the version last read on the server (empty: follows latest)",
                        null=True,
                    ),
                ),
                (
                    "seen_status",
                    models.CharField(
                        blank=True,
                        editable=False,
                        help_text="active, paused, archived or missing, when last read",
                        max_length=16,
                    ),
                ),
                ("seen_at", models.DateTimeField(blank=True, editable=False, null=True)),
                ("bound_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                (
                    "agent",
                    models.ForeignKey(
                        editable=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="deployment_bindings",
                        to="promptctl.agent",
                    ),
                ),
                (
                    "bound_by",
                    models.ForeignKey(
                        editable=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["agent_id", "channel", "deployment_id"],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("state__in", ["in_step", "behind", "unpinned", "drifted"])),
                        name="deploymentbinding_state_valid",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("deployment_id", ""), _negated=True), models.Q(("channel", ""), _negated=True)
                        ),
                        name="deploymentbinding_ids_not_blank",
                        violation_error_message="A binding names a deployment id and a channel.",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("set_version__isnull", True), ("set_version__gte", 1), _connector="OR"),
                        name="deploymentbinding_set_version_positive",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            ("state", "in_step"), models.Q(("problem", ""), _negated=True), _connector="OR"
                        ),
                        name="deploymentbinding_problem_said",
                        violation_error_message="A binding that is not in step says what is wrong with it.",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("state", "in_step"), _negated=True),
                            ("set_version__isnull", False),
                            _connector="OR",
                        ),
                        name="deploymentbinding_in_step_was_set",
                        violation_error_message="A binding is in step only at a version promptctl set.",
                    ),
                ],
            },
        ),
    ]
