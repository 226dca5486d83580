"""Secure defaults: production is what you get without asking, and development asks for itself."""

from __future__ import annotations

import os
import secrets
import stat

import pytest

from tests.deployment.support import dockerfile_env, manage

# Each test starts manage.py in a fresh interpreter.
pytestmark = pytest.mark.slow

OLD_DEVELOPMENT_KEY = "promptctl-insecure-development-key-not-for-production-use"


def clean_env(**variables: str) -> dict[str, str]:
    """Nothing of this process's environment but PATH: the settings see only ``variables``."""
    return {"PATH": os.environ["PATH"], **variables}


def test_check_deploy_is_clean_with_only_a_key_and_a_host(tmp_path):
    env = clean_env(
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50)[:50],
        DJANGO_ALLOWED_HOSTS="example.com",
        PROMPTCTL_AUDIT_KEY=secrets.token_urlsafe(48),  # production's other required secret (the audit chain's key)
        PROMPTCTL_VAR_DIR=str(tmp_path),
    )

    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output
    assert not (tmp_path / "secret_key").exists()  # production never writes a key of its own


def test_no_environment_at_all_is_production_and_says_how_to_develop(tmp_path):
    result = manage("promptctl", "agent", "list", env=clean_env(PROMPTCTL_VAR_DIR=str(tmp_path)))

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set and DJANGO_DEBUG is false (its default)" in result.stderr
    assert "DJANGO_DEBUG=true" in result.stderr


def test_development_generates_its_key_into_the_state_directory_once(tmp_path):
    env = clean_env(DJANGO_DEBUG="true", PROMPTCTL_VAR_DIR=str(tmp_path))
    show_key = ("shell", "--no-imports", "-c", "from django.conf import settings; print(settings.SECRET_KEY)")

    first, second = manage(*show_key, env=env), manage(*show_key, env=env)

    assert first.returncode == 0, first.stderr
    key = first.stdout.strip()
    assert key == second.stdout.strip() == (tmp_path / "secret_key").read_text().strip()
    assert len(key) >= 50 and key != OLD_DEVELOPMENT_KEY
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600


def test_a_development_shell_with_debug_on_runs_the_cli(tmp_path):
    env = clean_env(DJANGO_DEBUG="true", PROMPTCTL_VAR_DIR=str(tmp_path))

    assert manage("migrate", "--noinput", "-v", "0", env=env).returncode == 0
    result = manage("promptctl", "agent", "list", env=env)

    assert result.returncode == 0, result.stderr
    assert "No agents yet" in result.stdout


def test_the_image_runs_with_debug_off():
    assert dockerfile_env()["DJANGO_DEBUG"] == "false"
