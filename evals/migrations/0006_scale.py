"""Scale: an index for each evals list's order and filters, so a page reads its rows off an index."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("evals", "0005_worker_heartbeat")]

    operations = [
        migrations.AddIndex(
            model_name="comparison",
            index=models.Index(fields=["-created_at", "-id"], name="comparison_recent"),
        ),
        migrations.AddIndex(
            model_name="comparison",
            index=models.Index(fields=["regressed", "-created_at"], name="comparison_regressed_recent"),
        ),
        migrations.AddIndex(
            model_name="evalresult",
            index=models.Index(fields=["kind", "run"], name="evalresult_kind"),
        ),
        migrations.AddIndex(
            model_name="evalrun",
            index=models.Index(fields=["-created_at", "-id"], name="evalrun_recent"),
        ),
    ]
