"""Scale: rolling canary counters, an index per request-log filter, and (PostgreSQL) a trigram index for search.

- ``CanaryCounter`` is filled from the existing log, so canaries live during the
  upgrade keep their figures.
- The trigram index serves the request-log search's ``UPPER(subject) LIKE '%…%'``
  (``icontains``) on PostgreSQL; it needs the ``pg_trgm`` extension, created here
  only on PostgreSQL (``CREATE EXTENSION`` needs a role allowed to create it).
  SQLite gets neither: its search is bounded to the newest rows instead
  (``triage.admin.request_log``).
"""

import django.db.models.deletion
from django.db import migrations, models

TRIGRAM_INDEX = "triagerequest_subject_trgm"


def counters_fill(apps, schema_editor):
    from django.db.models import Count, Q

    request_model = apps.get_model("triage", "TriageRequest")
    counter_model = apps.get_model("triage", "CanaryCounter")
    alias = schema_editor.connection.alias  # the connection migrating (the owner's, under `db migrate`)
    rows = (
        request_model.objects.using(alias)
        .filter(canary=True)
        .order_by()
        .values("agent_id", "pin_revision")
        .annotate(
            requests=Count("pk"),
            invalid=Count("pk", filter=Q(outcome="invalid")),
            errors=Count("pk", filter=Q(outcome__in=["unavailable", "timeout", "refused"])),
        )
    )
    counter_model.objects.using(alias).bulk_create(counter_model(**row) for row in rows)


def trigram_index_create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {TRIGRAM_INDEX} ON triage_triagerequest USING gin (UPPER(subject) gin_trgm_ops)"
    )


def trigram_index_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {TRIGRAM_INDEX}")


class Migration(migrations.Migration):
    dependencies = [("triage", "0008_triage_role_permissions")]

    operations = [
        migrations.CreateModel(
            name="CanaryCounter",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("pin_revision", models.PositiveBigIntegerField(editable=False)),
                ("requests", models.PositiveBigIntegerField(default=0, editable=False)),
                ("invalid", models.PositiveBigIntegerField(default=0, editable=False)),
                ("errors", models.PositiveBigIntegerField(default=0, editable=False)),
                (
                    "agent",
                    models.ForeignKey(
                        editable=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="promptctl.agent",
                    ),
                ),
            ],
            options={"verbose_name": "canary counter"},
        ),
        migrations.AddConstraint(
            model_name="canarycounter",
            constraint=models.UniqueConstraint(
                fields=("agent", "pin_revision"), name="canarycounter_one_per_pin_revision"
            ),
        ),
        migrations.AddConstraint(
            model_name="canarycounter",
            constraint=models.CheckConstraint(
                condition=models.Q(("invalid__lte", models.F("requests")), ("errors__lte", models.F("requests"))),
                name="canarycounter_parts_within_requests",
            ),
        ),
        migrations.RunPython(counters_fill, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="triagerequest",
            index=models.Index(fields=["outcome", "-received_at"], name="triagerequest_outcome_recent"),
        ),
        migrations.AddIndex(
            model_name="triagerequest",
            index=models.Index(fields=["canary", "-received_at"], name="triagerequest_canary_recent"),
        ),
        migrations.AddIndex(
            model_name="triagerequest",
            index=models.Index(fields=["source", "-received_at"], name="triagerequest_source_recent"),
        ),
        migrations.AddIndex(
            model_name="triagerequest",
            index=models.Index(fields=["agent", "-received_at"], name="triagerequest_agent_recent"),
        ),
        migrations.AddIndex(
            model_name="triagerequest",
            index=models.Index(fields=["request_key"], name="triagerequest_request_key"),
        ),
        migrations.AddIndex(
            model_name="triagerequest",
            index=models.Index(fields=["session_id"], name="triagerequest_session"),
        ),
        migrations.RunPython(trigram_index_create, trigram_index_drop),
    ]
