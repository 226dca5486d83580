"""``DomainError`` for the apps: the type lives in the bottom layer (``managed_agents.errors``)."""

from managed_agents.errors import DomainError

__all__ = ["DomainError"]
