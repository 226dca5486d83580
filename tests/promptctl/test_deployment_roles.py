"""Requesters and reviewers read deployment bindings and version intents (migration 0013, ``ROLE_PERMISSIONS``)."""

from __future__ import annotations

import importlib

import pytest
from django.test import Client
from django.urls import reverse

from promptctl import services
from tests.change_control_support import PASSWORD

migration = importlib.import_module("promptctl.migrations.0013_deployment_roles")


def test_the_migrations_frozen_copy_is_in_the_roles_permissions():
    for group in migration.GROUPS:
        assert {f"promptctl.{codename}" for codename in migration.CODENAMES} <= set(services.ROLE_PERMISSIONS[group])


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["requester", "reviewer"])
def test_each_role_reads_the_deployment_bindings_and_version_intents_but_cannot_bind(role):
    person = services.user_create(username=f"someone-{role}", role=role, password=PASSWORD)
    browser = Client()
    browser.force_login(person)
    for model in ("deploymentbinding", "versionintent"):
        page = browser.get(reverse(f"admin:promptctl_{model}_changelist"))
        assert page.status_code == 200, (role, model)
    assert not person.has_perm("promptctl.add_deploymentbinding")
    assert browser.get(reverse("admin:promptctl_deploymentbinding_add")).status_code == 403
