"""A canary call drawn for the canary watch says so in the log, so a comparison a dead worker lost is found again.

The request log's guard (0010_retention) lists every column a redaction must leave as it was; it is
built again here so that list includes ``compare_drawn`` (and, on SQLite, because adding the column
rebuilt the table without its triggers).
"""

import importlib

from django.db import migrations, models

_retention = importlib.import_module("triage.migrations.0010_retention")


class Migration(migrations.Migration):

    dependencies = [
        ('promptctl', '0017_webhook_delivery_event_index'),
        ('triage', '0010_retention'),
    ]

    operations = [
        migrations.AddField(
            model_name='triagerequest',
            name='compare_drawn',
            field=models.BooleanField(default=False, editable=False, help_text='drawn to be answered by the production version too'),
        ),
        migrations.AddIndex(
            model_name='triagerequest',
            index=models.Index(condition=models.Q(('compare_drawn', True)), fields=['agent', 'pin_revision', 'received_at'], name='triagerequest_compare_drawn'),
        ),
        migrations.RunPython(
            _retention._run({"postgresql": _retention._postgresql, "sqlite": _retention._sqlite}),
            # Backwards: the blanket guard of 0006 (names no column), so the column can be dropped; migrating
            # back over 0010 then leaves the log refusing every UPDATE, the redaction too (the safe side).
            _retention._run({"postgresql": _retention._postgresql_reverse, "sqlite": _retention._sqlite_reverse}),
        ),
    ]
