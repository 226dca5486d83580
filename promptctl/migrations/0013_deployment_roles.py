"""Requesters and reviewers read the deployment bindings and version intents (what moves with a pin, what is pending).

Frozen copy of the part of ``promptctl.services.users.ROLE_PERMISSIONS`` added
with those models; ``services.roles_ensure`` keeps existing databases in step
afterwards. Permissions are created here first because Django makes them only
after all migrations have run.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

CODENAMES = ("view_deploymentbinding", "view_versionintent")
GROUPS = ("requesters", "reviewers")


def permissions_grant(apps, schema_editor):
    alias = schema_editor.connection.alias
    app_config = apps.get_app_config("promptctl")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0, using=alias)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    granted = Permission.objects.using(alias).filter(content_type__app_label="promptctl", codename__in=CODENAMES)
    for name in GROUPS:
        group, _created = Group.objects.using(alias).get_or_create(name=name)
        group.permissions.add(*granted)


def permissions_revoke(apps, schema_editor):
    alias = schema_editor.connection.alias
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    granted = Permission.objects.using(alias).filter(content_type__app_label="promptctl", codename__in=CODENAMES)
    for group in Group.objects.using(alias).filter(name__in=GROUPS):
        group.permissions.remove(*granted)


class Migration(migrations.Migration):
    dependencies = [("promptctl", "0012_deployment_bindings")]

    operations = [migrations.RunPython(permissions_grant, permissions_revoke)]
