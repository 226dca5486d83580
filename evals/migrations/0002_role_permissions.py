"""Give the ``requesters`` and ``reviewers`` groups their evals permissions.

Frozen copy of the evals part of ``promptctl.services.ROLE_PERMISSIONS``;
``services.roles_ensure`` keeps existing databases in step afterwards.
Permissions are created here first because Django makes them only after all
migrations have run.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

READ = ("view_testset", "view_testsetversion", "view_testcase", "view_evalrun", "view_evalresult", "view_comparison")
ROLE_PERMISSIONS = {
    "requesters": READ + ("add_testset", "add_evalrun", "change_evalrun", "add_comparison"),
    "reviewers": READ,
}


def permissions_grant(apps, schema_editor):
    alias = schema_editor.connection.alias
    app_config = apps.get_app_config("evals")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0, using=alias)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group_name, codenames in ROLE_PERMISSIONS.items():
        group, _created = Group.objects.using(alias).get_or_create(name=group_name)
        group.permissions.add(
            *Permission.objects.using(alias).filter(content_type__app_label="evals", codename__in=codenames)
        )


def permissions_revoke(apps, schema_editor):
    alias = schema_editor.connection.alias
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    evals_permissions = Permission.objects.using(alias).filter(content_type__app_label="evals")
    for group in Group.objects.using(alias).filter(name__in=list(ROLE_PERMISSIONS)):
        group.permissions.remove(*evals_permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("evals", "0001_initial"),
        ("promptctl", "0003_role_groups"),
    ]

    operations = [migrations.RunPython(permissions_grant, permissions_revoke)]
