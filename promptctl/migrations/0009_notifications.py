"""Reviewer notifications: webhooks and their deliveries (placeholder, filled by the issue 12 work)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("promptctl", "0008_personal_tokens")]

    operations: list = []
