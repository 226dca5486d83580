"""The gate's own inputs under change control (placeholder, filled by the issue 11 work)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("promptctl", "0006_delete_guards")]

    operations: list = []
