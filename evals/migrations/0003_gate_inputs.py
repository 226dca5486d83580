"""The gating test set under change control: the ``evals.change_gating_testset`` permission.

Choosing an agent's gating set, and importing new contents into it, changes
how every later promotion is judged, so ``evals.services.testsets`` requires
this permission. No role group holds it: admins (superusers, in both groups)
do, and an admin may grant it to a person deliberately. The permission is
created here, because Django makes permissions only after all migrations ran.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def permission_create(apps, schema_editor):
    app_config = apps.get_app_config("evals")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [("evals", "0002_role_permissions"), ("promptctl", "0007_gate_inputs")]

    operations = [
        migrations.AlterModelOptions(
            name="testset",
            options={
                "ordering": ["name"],
                "permissions": [
                    (
                        "change_gating_testset",
                        "Can choose an agent's gating test set and import new versions of it",
                    )
                ],
            },
        ),
        migrations.RunPython(permission_create, migrations.RunPython.noop),
    ]
