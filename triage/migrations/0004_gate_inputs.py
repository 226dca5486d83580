"""Default routing agent and canary watch under change control (placeholder, filled by the issue 11 work)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("triage", "0003_abandoned_outcome"), ("evals", "0003_gate_inputs")]

    operations: list = []
