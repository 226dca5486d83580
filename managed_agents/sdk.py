"""The ``anthropic`` package, imported when it is first used.

Importing the SDK costs about three seconds of CPU (thousands of typed
models). Every Django process loads the services, and through them this
layer, but most never call Managed Agents: the CLI's reads, migrations,
health checks, the admin's pages. So the gateway modules name the SDK through
this stand-in at run time and import the real package only for the type
checker:

    if TYPE_CHECKING:
        import anthropic
    else:
        from managed_agents.sdk import anthropic

The first attribute read (``anthropic.Anthropic``, ``anthropic.APIStatusError``
in an ``except`` clause, ...) imports the package; later reads go straight to it.
Processes whose job is to call Managed Agents (a Celery worker, the web
process serving the API) call ``sdk_preload()`` at start-up instead, so no
caller waits for the import.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import Any


class _ImportedOnFirstUse:
    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None
        self._lock = threading.Lock()

    def __getattr__(self, attribute: str) -> Any:
        module = self._module
        if module is None:
            with self._lock:
                if self._module is None:
                    self._module = importlib.import_module(self._name)
                module = self._module
        return getattr(module, attribute)

    def load(self) -> None:
        """Import the package now (a process that will call Managed Agents, before its first call)."""
        self.__getattr__("__name__")

    def __repr__(self) -> str:
        state = "imported" if self._module is not None else "not imported yet"
        return f"<{self._name} SDK, {state}>"


anthropic = _ImportedOnFirstUse("anthropic")


def sdk_preload() -> None:
    """Import the SDK now: for the processes whose job is to call Managed Agents (workers, the API server).

    They would otherwise pay the import on their first session, inside a
    caller's wait; everything else (CLI, migrations, checks) never pays it.
    """
    anthropic.load()
