"""Keyed audit chain and checkpoints (placeholder, filled by the issue 11 work)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("promptctl", "0004_constraint_messages")]

    operations: list = []
