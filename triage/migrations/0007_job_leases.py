"""Leases of async triage jobs: which worker holds the newest attempt and until when, so a dead one's job is resumed."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("triage", "0006_record_guards")]

    operations = [
        migrations.AddField(
            model_name="historicaltriagejob",
            name="enqueued_at",
            field=models.DateTimeField(
                blank=True, editable=False, help_text="when a message for the job was last sent", null=True
            ),
        ),
        migrations.AddField(
            model_name="historicaltriagejob",
            name="lease_expires_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="historicaltriagejob",
            name="lease_holder",
            field=models.CharField(blank=True, editable=False, help_text="worker node name", max_length=255),
        ),
        migrations.AddField(
            model_name="historicaltriagejob",
            name="lease_pid",
            field=models.PositiveIntegerField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="historicaltriagejob",
            name="leased_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="historicaltriagejob",
            name="resumes",
            field=models.PositiveIntegerField(
                default=0, editable=False, help_text="times the sweep sent the job again"
            ),
        ),
        migrations.AddField(
            model_name="triagejob",
            name="enqueued_at",
            field=models.DateTimeField(
                blank=True, editable=False, help_text="when a message for the job was last sent", null=True
            ),
        ),
        migrations.AddField(
            model_name="triagejob",
            name="lease_expires_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="triagejob",
            name="lease_holder",
            field=models.CharField(blank=True, editable=False, help_text="worker node name", max_length=255),
        ),
        migrations.AddField(
            model_name="triagejob",
            name="lease_pid",
            field=models.PositiveIntegerField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="triagejob", name="leased_at", field=models.DateTimeField(blank=True, editable=False, null=True)
        ),
        migrations.AddField(
            model_name="triagejob",
            name="resumes",
            field=models.PositiveIntegerField(
                default=0, editable=False, help_text="times the sweep sent the job again"
            ),
        ),
        migrations.AddIndex(
            model_name="triagejob",
            index=models.Index(fields=["status", "created_at"], name="triagejob_status_created"),
        ),
    ]
