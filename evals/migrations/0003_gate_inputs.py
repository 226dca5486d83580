"""The gating test set under change control (placeholder, filled by the issue 11 work)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("evals", "0002_role_permissions"), ("promptctl", "0007_gate_inputs")]

    operations: list = []
