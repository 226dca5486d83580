"""``DomainError`` and ``Fix`` for the apps: the types live in the bottom layer (``managed_agents.errors``)."""

from managed_agents.errors import DomainError, Fix

__all__ = ["DomainError", "Fix"]
