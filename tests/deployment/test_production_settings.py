"""Production settings: ``manage.py check --deploy`` is clean, and start-up refuses what production must set."""

from __future__ import annotations

import pytest

from tests.deployment.support import manage, production_env

# Each test starts manage.py in a fresh interpreter.
pytestmark = pytest.mark.slow


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env(tmp_path))

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNINGS" not in output
    assert "System check identified no issues" in output


@pytest.mark.parametrize(
    ("secret_key", "says"),
    [
        (None, "DJANGO_SECRET_KEY is not set"),
        ("", "DJANGO_SECRET_KEY is not set"),
        ("short-key", "DJANGO_SECRET_KEY is too weak"),
    ],
)
def test_production_start_up_refuses_a_missing_or_weak_secret_key(tmp_path, secret_key, says):
    result = manage("check", env=production_env(tmp_path, DJANGO_SECRET_KEY=secret_key))

    assert result.returncode != 0
    assert result.stderr.startswith("promptctl: settings: ") and "Traceback" not in result.stderr
    assert says in result.stderr
    assert "secrets.token_urlsafe" in result.stderr  # says how to make one


def test_production_start_up_refuses_missing_allowed_hosts(tmp_path):
    result = manage("check", env=production_env(tmp_path, DJANGO_ALLOWED_HOSTS=None))

    assert result.returncode != 0
    assert result.stderr.startswith("promptctl: settings: DJANGO_ALLOWED_HOSTS is not set")


def test_development_needs_only_debug_on(tmp_path):
    # DEBUG is off by default; development asks for it and needs nothing else (tests/deployment/test_check_deploy.py).
    env = production_env(tmp_path, DJANGO_DEBUG="true", DJANGO_SECRET_KEY=None, DJANGO_ALLOWED_HOSTS=None)

    result = manage("check", env=env)

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("days", "says"),
    [
        ("abc", "PROMPTCTL_RETENTION_TICKET_TEXT_DAYS='abc' is not a valid int"),
        ("1.5", "PROMPTCTL_RETENTION_TICKET_TEXT_DAYS='1.5' is not a valid int"),
        ("-1", "PROMPTCTL_RETENTION_TICKET_TEXT_DAYS=-1 is out of range: give whole days from 0 to 36500"),
        ("3000000", "PROMPTCTL_RETENTION_TICKET_TEXT_DAYS=3000000 is out of range"),
    ],
)
def test_a_retention_period_that_is_not_whole_days_in_range_is_named_in_one_line(tmp_path, days, says):
    env = production_env(tmp_path, DJANGO_DEBUG="true", PROMPTCTL_RETENTION_TICKET_TEXT_DAYS=days)

    result = manage("promptctl", "retention", "purge", "--dry-run", env=env)

    assert result.returncode == 1
    assert result.stderr.startswith("promptctl: settings: ") and len(result.stderr.strip().splitlines()) == 1
    assert says in result.stderr and "Traceback" not in result.stderr
