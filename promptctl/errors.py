"""The one error type every refusal raises.

Services refuse with ``DomainError`` and a message for people: what was
refused, why, and what to do next. Admin, CLI and API show the message as is.
"""


class DomainError(Exception):
    """A refusal or failure the user can act on; ``str(error)`` is the whole story."""
