"""The canary watch: production shadows a sample of canary calls, the disagreement limit, standing auto-end.

One ``CanaryPolicy`` per agent (history-tracked; changed through ``canary_policy_save``), one immutable
``CanaryComparison`` per compared canary call, and the disagreement figures on each ``CanaryCheck``.

And one database guard: the ``promptctl-auto-end`` account (the standing approval of an agent's
``auto_end`` policy) may approve only a rollback requested by the ``promptctl`` account for an agent
whose canary policy has ``auto_end`` on. Its group membership lets it pass the approval service's
reviewer checks, so without this guard an insider could approve their own request as it.
"""

import django.db.models.deletion
import django.utils.timezone
import simple_history.models
from django.conf import settings
from django.db import migrations, models

AUTO_END_APPROVAL_ALLOWED = """(
    NOT EXISTS (SELECT 1 FROM auth_user u WHERE u.id = NEW.reviewer_id AND u.username = 'promptctl-auto-end')
    OR EXISTS (
        SELECT 1 FROM promptctl_changerequest c
        JOIN auth_user r ON r.id = c.requested_by_id
        JOIN triage_canarypolicy p ON p.agent_id = c.agent_id
        WHERE c.id = NEW.change_id AND c.kind = 'rollback' AND r.username = 'promptctl' AND p.auto_end
          AND NEW.decision = 'approve'))"""
REFUSAL = "promptctl: promptctl-auto-end approves only the rollbacks promptctl files to end a canary under auto_end"


def _guard(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        statements = [
            f"""CREATE OR REPLACE FUNCTION triage_auto_end_approval_guard() RETURNS trigger AS $$
               BEGIN
                 IF NOT {AUTO_END_APPROVAL_ALLOWED} THEN
                   RAISE EXCEPTION '{REFUSAL}';
                 END IF;
                 RETURN NEW;
               END $$ LANGUAGE plpgsql""",
            """CREATE TRIGGER triage_auto_end_approval_guard BEFORE INSERT ON promptctl_approval
               FOR EACH ROW EXECUTE FUNCTION triage_auto_end_approval_guard()""",
        ]
    elif vendor == "sqlite":
        statements = [
            f"""CREATE TRIGGER triage_auto_end_approval_guard BEFORE INSERT ON promptctl_approval
               WHEN NOT {AUTO_END_APPROVAL_ALLOWED}
               BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"""
        ]
    else:
        raise RuntimeError(f"the canary watch's database guard is written for PostgreSQL and SQLite, not {vendor}")
    for statement in statements:
        schema_editor.execute(statement, params=None)


def _guard_reverse(apps, schema_editor):
    schema_editor.execute(
        "DROP TRIGGER IF EXISTS triage_auto_end_approval_guard"
        + (" ON promptctl_approval" if schema_editor.connection.vendor == "postgresql" else "")
    )
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS triage_auto_end_approval_guard()")


class Migration(migrations.Migration):
    dependencies = [
        ("triage", "0004_gate_inputs"),
        ("promptctl", "0002_database_guards"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="CanaryComparison",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("pin_revision", models.PositiveBigIntegerField(editable=False)),
                (
                    "outcome",
                    models.CharField(
                        choices=[
                            ("ok", "valid verdict"),
                            ("invalid", "invalid output"),
                            ("unavailable", "upstream unavailable"),
                            ("timeout", "session timed out"),
                            ("refused", "upstream refused"),
                            ("abandoned", "caller went away"),
                        ],
                        editable=False,
                        max_length=16,
                    ),
                ),
                ("team", models.CharField(blank=True, editable=False, help_text="production's team", max_length=100)),
                (
                    "priority",
                    models.CharField(blank=True, editable=False, help_text="production's priority", max_length=50),
                ),
                ("problem", models.TextField(blank=True, editable=False)),
                ("reply", models.TextField(blank=True, editable=False)),
                ("session_id", models.CharField(blank=True, editable=False, max_length=200)),
                ("latency_ms", models.PositiveIntegerField(editable=False)),
                (
                    "agrees",
                    models.BooleanField(
                        blank=True,
                        editable=False,
                        help_text="team and priority match the canary's; empty when production gave no valid verdict",
                        null=True,
                    ),
                ),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
            ],
            options={
                "ordering": ["-created_at", "-id"],
            },
        ),
        migrations.CreateModel(
            name="CanaryPolicy",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "compare_percent",
                    models.PositiveSmallIntegerField(
                        default=100,
                        help_text="share of valid canary replies also answered by the production version, to compare (0-100)",
                    ),
                ),
                (
                    "disagreement_limit",
                    models.FloatField(
                        default=0.2,
                        help_text="end the canary when its verdicts differ from production's on more than this share, overall or for any one team of production's verdict (0-1)",
                    ),
                ),
                (
                    "min_compared",
                    models.PositiveIntegerField(
                        default=10,
                        help_text="compared calls (overall, or of one team) before the disagreement limit can trip",
                    ),
                ),
                (
                    "auto_end",
                    models.BooleanField(
                        default=False,
                        help_text="when the canary trips, promptctl approves and applies its own rollback at once (off: one person must approve it)",
                    ),
                ),
                ("auto_end_granted_at", models.DateTimeField(blank=True, editable=False, null=True)),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
            ],
            options={
                "verbose_name": "canary policy",
                "verbose_name_plural": "canary policies",
            },
        ),
        migrations.CreateModel(
            name="HistoricalCanaryPolicy",
            fields=[
                ("id", models.BigIntegerField(auto_created=True, blank=True, db_index=True, verbose_name="ID")),
                (
                    "compare_percent",
                    models.PositiveSmallIntegerField(
                        default=100,
                        help_text="share of valid canary replies also answered by the production version, to compare (0-100)",
                    ),
                ),
                (
                    "disagreement_limit",
                    models.FloatField(
                        default=0.2,
                        help_text="end the canary when its verdicts differ from production's on more than this share, overall or for any one team of production's verdict (0-1)",
                    ),
                ),
                (
                    "min_compared",
                    models.PositiveIntegerField(
                        default=10,
                        help_text="compared calls (overall, or of one team) before the disagreement limit can trip",
                    ),
                ),
                (
                    "auto_end",
                    models.BooleanField(
                        default=False,
                        help_text="when the canary trips, promptctl approves and applies its own rollback at once (off: one person must approve it)",
                    ),
                ),
                ("auto_end_granted_at", models.DateTimeField(blank=True, editable=False, null=True)),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ("history_id", models.AutoField(primary_key=True, serialize=False)),
                ("history_date", models.DateTimeField(db_index=True)),
                ("history_change_reason", models.CharField(max_length=100, null=True)),
                (
                    "history_type",
                    models.CharField(choices=[("+", "Created"), ("~", "Changed"), ("-", "Deleted")], max_length=1),
                ),
            ],
            options={
                "verbose_name": "historical canary policy",
                "verbose_name_plural": "historical canary policies",
                "ordering": ("-history_date", "-history_id"),
                "get_latest_by": ("history_date", "history_id"),
            },
            bases=(simple_history.models.HistoricalChanges, models.Model),
        ),
        migrations.AddField(
            model_name="canarycheck",
            name="auto_ended",
            field=models.BooleanField(
                default=False,
                editable=False,
                help_text="promptctl approved and applied the rollback under the agent's standing canary_auto_end policy",
            ),
        ),
        migrations.AddField(
            model_name="canarycheck",
            name="compared",
            field=models.PositiveIntegerField(
                default=0, editable=False, help_text="canary calls also answered by the production version"
            ),
        ),
        migrations.AddField(
            model_name="canarycheck",
            name="disagreements",
            field=models.PositiveIntegerField(
                default=0, editable=False, help_text="compared calls where the two verdicts' team or priority differ"
            ),
        ),
        migrations.AddField(
            model_name="canarycheck",
            name="examples",
            field=models.JSONField(default=list, editable=False, help_text="ids of logged requests that disagreed"),
        ),
        migrations.AddField(
            model_name="canarycheck",
            name="labels",
            field=models.JSONField(
                default=dict,
                editable=False,
                help_text="per team of the production verdict: compared, disagreements, rate",
            ),
        ),
        migrations.AddField(
            model_name="canarycheck",
            name="max_disagreement_rate",
            field=models.FloatField(default=0.2, editable=False),
        ),
        migrations.AddField(
            model_name="canarycheck",
            name="min_compared",
            field=models.PositiveIntegerField(default=10, editable=False),
        ),
        migrations.AddField(
            model_name="canarycheck",
            name="tripped_by",
            field=models.CharField(
                blank=True, editable=False, help_text="which limits the canary crossed", max_length=200
            ),
        ),
        migrations.AddConstraint(
            model_name="canarycheck",
            constraint=models.CheckConstraint(
                condition=models.Q(("disagreements__lte", models.F("compared"))),
                name="canarycheck_disagreements_of_compared",
            ),
        ),
        migrations.AddField(
            model_name="canarycomparison",
            name="agent",
            field=models.ForeignKey(
                editable=False, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="promptctl.agent"
            ),
        ),
        migrations.AddField(
            model_name="canarycomparison",
            name="production_version",
            field=models.ForeignKey(
                editable=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="promptctl.agentversion",
            ),
        ),
        migrations.AddField(
            model_name="canarycomparison",
            name="request",
            field=models.OneToOneField(
                editable=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="canary_comparison",
                to="triage.triagerequest",
            ),
        ),
        migrations.AddField(
            model_name="canarypolicy",
            name="agent",
            field=models.OneToOneField(
                on_delete=django.db.models.deletion.PROTECT, related_name="canary_policy", to="promptctl.agent"
            ),
        ),
        migrations.AddField(
            model_name="canarypolicy",
            name="auto_end_granted_by",
            field=models.ForeignKey(
                blank=True,
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="historicalcanarypolicy",
            name="agent",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="promptctl.agent",
            ),
        ),
        migrations.AddField(
            model_name="historicalcanarypolicy",
            name="auto_end_granted_by",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="historicalcanarypolicy",
            name="history_user",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL
            ),
        ),
        migrations.AddIndex(
            model_name="canarycomparison",
            index=models.Index(fields=["agent", "pin_revision"], name="canarycomparison_window"),
        ),
        migrations.AddConstraint(
            model_name="canarycomparison",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("outcome__in", ["ok", "invalid", "unavailable", "timeout", "refused", "abandoned"])
                ),
                name="canarycomparison_outcome_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="canarycomparison",
            constraint=models.CheckConstraint(
                condition=models.Q(("agrees__isnull", True), ("outcome", "ok"), _connector="OR"),
                name="canarycomparison_agreement_needs_a_verdict",
            ),
        ),
        migrations.AddConstraint(
            model_name="canarypolicy",
            constraint=models.CheckConstraint(
                condition=models.Q(("compare_percent__gte", 0), ("compare_percent__lte", 100)),
                name="canarypolicy_compare_percent_range",
            ),
        ),
        migrations.AddConstraint(
            model_name="canarypolicy",
            constraint=models.CheckConstraint(
                condition=models.Q(("disagreement_limit__gte", 0), ("disagreement_limit__lte", 1)),
                name="canarypolicy_disagreement_limit_range",
            ),
        ),
        migrations.AddConstraint(
            model_name="canarypolicy",
            constraint=models.CheckConstraint(
                condition=models.Q(("min_compared__gte", 1)), name="canarypolicy_min_compared_positive"
            ),
        ),
        migrations.AddConstraint(
            model_name="canarypolicy",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("auto_end", False),
                    models.Q(("auto_end_granted_at__isnull", False), ("auto_end_granted_by__isnull", False)),
                    _connector="OR",
                ),
                name="canarypolicy_auto_end_names_who_granted_it",
            ),
        ),
        migrations.RunPython(_guard, _guard_reverse),
    ]
