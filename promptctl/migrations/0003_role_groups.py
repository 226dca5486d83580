"""The ``requesters`` and ``reviewers`` groups with their permissions.

Frozen copy of ``promptctl.services.ROLE_PERMISSIONS`` at the time of writing;
``services.roles_ensure`` keeps existing databases in step afterwards.
Permissions are created here first because Django makes them only after all
migrations have run.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLE_PERMISSIONS = {
    "requesters": (
        "view_agent", "add_agent", "view_agentversion", "add_agentversion", "view_pin", "view_changerequest",
        "add_changerequest", "apply_changerequest", "view_approval", "view_auditevent",
    ),
    "reviewers": (
        "view_agent", "view_agentversion", "view_pin", "view_changerequest", "approve_changerequest",
        "apply_changerequest", "view_approval", "view_auditevent",
    ),
}


def groups_create(apps, schema_editor):
    app_config = apps.get_app_config("promptctl")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group_name, codenames in ROLE_PERMISSIONS.items():
        group, _created = Group.objects.using(schema_editor.connection.alias).get_or_create(name=group_name)
        permissions = Permission.objects.using(schema_editor.connection.alias).filter(
            content_type__app_label="promptctl", codename__in=codenames
        )
        group.permissions.set(permissions)


def groups_remove(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name__in=list(ROLE_PERMISSIONS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("promptctl", "0002_database_guards"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(groups_create, groups_remove)]
