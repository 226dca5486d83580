"""Delete and truncate guards on the record's tables (placeholder, filled by the issue 11 work)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("promptctl", "0005_audit_keyed")]

    operations: list = []
