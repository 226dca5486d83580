"""The Dockerfile read as data: its command, its pinned dependencies, its user."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tomllib

from config.processes import PROCESS_NAMES
from tests.deployment.support import ROOT, dockerfile_env, dockerfile_instructions, dockerfile_run_segment

# --- Dockerfile ----------------------------------------------------------------------------


def test_dockerfile_default_command_is_a_process_from_the_shared_list():
    commands = [json.loads(arguments) for keyword, arguments in dockerfile_instructions() if keyword == "CMD"]

    assert len(commands) == 1
    assert commands[0][:3] == ["python", "-m", "config.processes"]
    assert commands[0][3] in PROCESS_NAMES
    assert not [keyword for keyword, _ in dockerfile_instructions() if keyword == "ENTRYPOINT"]


def test_dockerfile_installs_exactly_the_pinned_dependencies_of_pyproject(tmp_path):
    requirements_step = dockerfile_run_segment("tomllib").split(">")[0]
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")

    result = subprocess.run(
        ["sh", "-c", requirements_step.replace("python ", shlex.quote(sys.executable) + " ", 1)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )

    pinned = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert result.stdout.split() == pinned
    assert any(requirement.startswith("uvicorn==") for requirement in pinned)


def test_dockerfile_runs_as_an_unprivileged_user_owning_the_state_directory():
    users = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "USER"]
    chown = dockerfile_run_segment("chown")

    assert users == ["promptctl"]
    assert dockerfile_env()["PROMPTCTL_VAR_DIR"] in chown.split()
