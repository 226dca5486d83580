"""No test carries out an admin flow by posting straight to an admin URL: admin flows are clicked in Chromium.

A test that posts to ``/admin/...`` never sees the page the button is on, so a
missing, hidden or broken button goes unnoticed (issue 14: the agent page's
Sync and Save were broken for months while a test posted to their URLs).
Admin actions are tested by clicking the real buttons (tests/browser_support.py).
The one exception is a test *about* a forged request (an attacker posting to a
URL whose button they do not see): its function name says ``forged``.

This scans the tests' source (AST) for ``.post(URL, ...)`` where URL is a string
starting with ``/admin/``, an f-string starting so, ``reverse("admin:...")``, a
concatenation starting with one of those, or a local name assigned one of those.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _admin_url(node: ast.AST | None, names: dict[str, ast.AST], depth: int = 0) -> bool:
    """Whether ``node`` evaluates to an admin URL, as far as the source shows."""
    if node is None or depth > 5:
        return False
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.startswith("/admin/")
    if isinstance(node, ast.JoinedStr):
        return bool(node.values) and _admin_url(node.values[0], names, depth + 1)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _admin_url(node.left, names, depth + 1)
    if isinstance(node, ast.Call):
        function = node.func
        name = function.id if isinstance(function, ast.Name) else getattr(function, "attr", "")
        if name == "reverse" and node.args:
            target = node.args[0]
            if isinstance(target, ast.Constant) and isinstance(target.value, str):
                return target.value.startswith("admin:")
            if isinstance(target, ast.JoinedStr) and target.values:
                first = target.values[0]
                return isinstance(first, ast.Constant) and str(first.value).startswith("admin:")
        return False
    if isinstance(node, ast.Name) and node.id in names:
        return _admin_url(names[node.id], names, depth + 1)
    return False


def _assignments(scope: ast.AST) -> dict[str, ast.AST]:
    """Simple ``name = value`` assignments in a scope (the last one wins, which is good enough for tests)."""
    names: dict[str, ast.AST] = {}
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            names[node.target.id] = node.value
    return names


def _action_posts(path: Path) -> list[str]:
    """``path:line in function: call`` for each post to an admin URL."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module_names = _assignments(tree)
    found: list[str] = []

    def visit(node: ast.AST, function: str, names: dict[str, ast.AST]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner = child.name if "forged" not in function else function
                visit(child, inner, {**names, **_assignments(child)})
                continue
            if (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Attribute)
                and child.func.attr == "post"
                and "forged" not in function
            ):
                url = child.args[0] if child.args else next((k.value for k in child.keywords if k.arg == "path"), None)
                if _admin_url(url, names):
                    relative = path.relative_to(TESTS.parent)
                    found.append(f"{relative}:{child.lineno} in {function or '<module>'}: {ast.unparse(child)[:100]}")
            visit(child, function, names)

    visit(tree, "", module_names)
    return found


def test_the_guard_sees_a_post_to_an_admin_url(tmp_path):
    sample = TESTS / "_guard_sample_for_test_no_action_posts.py"
    source = (
        "def test_flow(client):\n"
        "    url = reverse('admin:promptctl_changerequest_action', args=[1, 'approve'])\n"
        "    client.post(url, {})\n"
        "    client.post(f'/admin/promptctl/agent/{1}/sync/')\n"
        "    client.post('/api/v1/triage', {})\n"
        "def test_a_forged_approve(client):\n"
        "    client.post(reverse('admin:promptctl_changerequest_action', args=[1, 'approve']))\n"
    )
    sample.write_text(source)
    try:
        found = _action_posts(sample)
    finally:
        sample.unlink()
    assert [line.split(" in ")[1].split(":")[0] for line in found] == ["test_flow", "test_flow"], found
    assert [int(line.split(":")[1].split(" ")[0]) for line in found] == [3, 4], found


def test_no_test_posts_to_an_admin_url_outside_a_forged_request_test():
    found = [hit for path in sorted(TESTS.rglob("*.py")) for hit in _action_posts(path)]
    assert not found, (
        "These tests post straight to admin URLs. Click the real button in a browser test instead "
        "(tests/browser_support.py), or, if the test is about a forged request being refused, "
        "put 'forged' in the test's name:\n  " + "\n  ".join(found)
    )
