"""Indexes for the pages that must stay flat from 10² to 10⁵ rows (issue 16).

- the agent timeline reads each source newest first per agent, bounded (``selectors.timeline_window``):
  versions by ``(agent, created_at)``, change requests by ``(agent, requested_at | approved_at | closed_at)``,
  approvals by ``created_at``;
- every filter the promptctl admin offers on the big lists reads its page from an index in list order:
  change requests by status, kind, channel (agent: ``changerequest_agent_requested``), versions by origin,
  audit events by verb and object type (agent: the existing ``agent_id_ref`` index).

CREATE INDEX only: SQLite keeps its guard triggers (no table rebuild).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("promptctl", "0013_deployment_roles")]

    operations = [
        migrations.AddIndex(
            model_name="agentversion",
            index=models.Index(fields=["agent", "created_at"], name="agentversion_agent_created"),
        ),
        migrations.AddIndex(
            model_name="agentversion",
            index=models.Index(fields=["origin", "agent"], name="agentversion_origin"),
        ),
        migrations.AddIndex(
            model_name="changerequest",
            index=models.Index(fields=["agent", "requested_at"], name="changerequest_agent_requested"),
        ),
        migrations.AddIndex(
            model_name="changerequest",
            index=models.Index(fields=["agent", "approved_at"], name="changerequest_agent_approved"),
        ),
        migrations.AddIndex(
            model_name="changerequest",
            index=models.Index(fields=["agent", "closed_at"], name="changerequest_agent_closed"),
        ),
        migrations.AddIndex(
            model_name="changerequest",
            index=models.Index(fields=["-requested_at", "-id"], name="changerequest_newest"),
        ),
        migrations.AddIndex(
            model_name="changerequest",
            index=models.Index(fields=["status", "-requested_at"], name="changerequest_status"),
        ),
        migrations.AddIndex(
            model_name="changerequest",
            index=models.Index(fields=["kind", "-requested_at"], name="changerequest_kind"),
        ),
        migrations.AddIndex(
            model_name="changerequest",
            index=models.Index(fields=["channel", "-requested_at"], name="changerequest_channel"),
        ),
        migrations.AddIndex(
            model_name="approval",
            index=models.Index(fields=["created_at"], name="approval_created"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["verb", "-sequence"], name="auditevent_verb"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["object_type", "-sequence"], name="auditevent_object_type"),
        ),
    ]
