"""The one error type every refusal raises, defined at the bottom layer so every layer can raise it.

Services refuse with ``DomainError`` and a message for people: what was
refused, why, and what to do next. Admin, CLI and API show the message as is.
The gateway's own failures (``GatewayError`` and its kinds) are refusals of
this type too, so every door words them the same way.
"""


class DomainError(Exception):
    """A refusal or failure the user can act on; ``str(error)`` is the whole story."""
