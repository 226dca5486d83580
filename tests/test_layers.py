"""The layers hold: every import, module-level or inside a function, goes down the order.

``managed_agents`` ← ``promptctl`` ← ``evals`` ← ``triage`` ← ``config`` ←
``demo`` / ``bench``; the contracts are in ``pyproject.toml``
(``[tool.importlinter]``) and ``docs/ARCHITECTURE.md`` explains them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_imports_follow_the_layers_and_no_app_has_a_cycle():
    result = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    # The layers, no cycles, and the promptctl client importing nothing of the server.
    assert "Contracts: 3 kept, 0 broken." in result.stdout
