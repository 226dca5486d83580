"""Give the ``requesters`` and ``reviewers`` groups their triage permissions.

Frozen copy of ``triage.apps.ROLE_PERMISSIONS`` at the time of writing (docs/API.md):
everyone with a role reads the request log, the jobs, shadow candidates and
results, routing policies and canary checks and policies; reviewers also
record corrected verdicts (``add_triagecorrection``/``change_triagecorrection``).
API keys stay with admins. ``services.roles_ensure`` keeps existing databases in
step afterwards. Permissions are created here first because Django makes them
only after all migrations have run.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

READ = (
    "view_triagerequest",
    "view_triagecorrection",
    "view_triagejob",
    "view_shadowcandidate",
    "view_shadowresult",
    "view_routingpolicy",
    "view_canarycheck",
    "view_canarycomparison",
    "view_canarypolicy",
)
ROLE_PERMISSIONS = {
    "requesters": READ,
    "reviewers": READ + ("add_triagecorrection", "change_triagecorrection"),
}


def permissions_grant(apps, schema_editor):
    alias = schema_editor.connection.alias
    app_config = apps.get_app_config("triage")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0, using=alias)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group_name, codenames in ROLE_PERMISSIONS.items():
        group, _created = Group.objects.using(alias).get_or_create(name=group_name)
        group.permissions.add(
            *Permission.objects.using(alias).filter(content_type__app_label="triage", codename__in=codenames)
        )


def permissions_revoke(apps, schema_editor):
    alias = schema_editor.connection.alias
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    granted = Permission.objects.using(alias).filter(
        content_type__app_label="triage", codename__in=set(ROLE_PERMISSIONS["reviewers"])
    )
    for group in Group.objects.using(alias).filter(name__in=list(ROLE_PERMISSIONS)):
        group.permissions.remove(*granted)


class Migration(migrations.Migration):
    dependencies = [
        ("triage", "0007_job_leases"),
        ("evals", "0002_role_permissions"),
    ]

    operations = [migrations.RunPython(permissions_grant, permissions_revoke)]
