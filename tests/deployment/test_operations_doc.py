"""docs/OPERATIONS.md lists every environment variable the code reads, and only those."""

from __future__ import annotations

import re

from tests.deployment.support import COMPOSE_FILE, ROOT, env_example, operations_table, variables_read_by_code

# --- docs/OPERATIONS.md --------------------------------------------------------------------


def test_operations_lists_every_environment_variable_the_code_reads():
    table = operations_table()
    read = variables_read_by_code()

    missing = {name: sorted(where) for name, where in read.items() if name not in table}

    assert missing == {}, f"docs/OPERATIONS.md's table does not list {missing}"


def test_operations_lists_only_variables_something_reads():
    table = operations_table()
    read = set(variables_read_by_code())
    compose_variables = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    test_variables = set(
        re.findall(r"os\.environ\.get\(\s*\"([A-Z][A-Z0-9_]*)\"", (ROOT / "tests" / "conftest.py").read_text())
    )

    unread = set(table) - read - compose_variables - test_variables - {"ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"}

    assert unread == set()
    assert all(row["default"] for row in table.values()), "every row needs a default (or 'none')"


def test_operations_lists_every_env_example_variable_and_no_default_for_the_secret_key():
    table = operations_table()

    assert set(env_example()) <= set(table)
    assert "DJANGO_SECRET_KEY" in table and "none" in table["DJANGO_SECRET_KEY"]["default"].lower()
