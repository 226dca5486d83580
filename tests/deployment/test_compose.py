"""docker-compose.yml against the compose-spec schema, plus the rules the schema cannot say."""

from __future__ import annotations

import importlib.resources
import json
import re
import sys

import pytest

from config.processes import CHECKED_PROCESS_NAMES, PROCESS_NAMES, process_argv
from tests.deployment.support import (
    COMPOSE_FILE,
    MIGRATE_COMMAND,
    SECRETS,
    app_services,
    compose,
    env_example,
    process_of,
    variables_read_by_code,
)

# --- docker-compose.yml --------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification_schema():
    pytest.importorskip("check_jsonschema", reason="the compose-spec schema ships in check-jsonschema (dev dependency)")
    import jsonschema

    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)

    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(compose())
    ]

    assert schema["title"] == "Compose Specification"
    assert errors == []


def test_every_app_service_runs_a_process_from_the_shared_list():
    services = app_services()
    processes = {name: process_of(service) for name, service in services.items()}
    one_shots = [name for name, service in services.items() if service.get("command") == MIGRATE_COMMAND]

    assert one_shots == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    for name, process in processes.items():
        if name in one_shots:
            continue
        assert process in PROCESS_NAMES, f"service {name} runs {services[name].get('command')}, not a promptctl process"
        assert process_argv(process)[0] == sys.executable
    assert sorted(process for process in processes.values() if process) == sorted(PROCESS_NAMES)
    # Every app service is the one image, built from this Dockerfile.
    assert all(service["build"] == "." for service in services.values())


def test_servers_and_long_running_app_processes_have_health_checks():
    services = compose()["services"]

    for name in ("postgres", "redis", "web", "worker", "emulator"):
        assert services[name]["healthcheck"]["test"], f"{name} has no health check"
    for service in app_services().values():
        process = process_of(service)
        if process in CHECKED_PROCESS_NAMES:
            # The same check the tests below run natively against the same processes.
            assert service["healthcheck"]["test"] == ["CMD", "python", "-m", "config.processes", "--check", process]


def test_dependencies_name_services_that_can_satisfy_them():
    services = compose()["services"]

    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on {target}, which is not a service"
            if rule["condition"] == "service_healthy":
                assert services[target].get("healthcheck"), (
                    f"{name} waits for {target} to be healthy, but it has no check"
                )
            if rule["condition"] == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{name} waits for {target} to finish, but it restarts"
    for name in ("web", "worker", "beat"):
        assert set(services[name]["depends_on"]) == {"postgres", "redis", "migrate"}


def test_named_volumes_are_declared():
    document = compose()
    declared = set(document.get("volumes") or {})

    used = {
        volume.split(":", 1)[0]
        for service in document["services"].values()
        for volume in service.get("volumes", [])
        if not volume.startswith((".", "/"))
    }

    assert used == {"postgres-data", "redis-data"}
    assert used <= declared


def test_the_emulator_runs_only_in_the_offline_profile():
    services = compose()["services"]

    assert services["emulator"]["profiles"] == ["offline"]
    assert [name for name, service in services.items() if service.get("profiles")] == ["emulator"]


def test_every_compose_variable_is_named_in_env_example_and_read_by_someone():
    text = COMPOSE_FILE.read_text()
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    example = env_example()
    read_by_code = variables_read_by_code()

    assert interpolated == {"POSTGRES_PASSWORD", "POSTGRES_APP_PASSWORD"}
    assert interpolated <= set(example)
    # Each variable in .env.example is read by promptctl (or the SDK through settings), or by compose itself.
    assert set(example) - set(read_by_code) - interpolated == set()
    for name, service in app_services().items():
        assert service["env_file"] == ".env"
        assert set(service["environment"]) <= set(read_by_code), f"{name} sets variables nothing reads"


def test_env_example_leaves_only_secrets_empty():
    example = env_example()

    empty = {name for name, value in example.items() if value == ""}

    assert empty == SECRETS
    # An empty ANTHROPIC_BASE_URL is not "unset" to the SDK: it would replace the live API's address.
    assert example["ANTHROPIC_BASE_URL"] is None
    assert example["DJANGO_DEBUG"] == "false"
