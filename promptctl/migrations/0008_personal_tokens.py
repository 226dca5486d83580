"""Personal access tokens (placeholder, filled by the issue 12 work)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("promptctl", "0007_gate_inputs")]

    operations: list = []
