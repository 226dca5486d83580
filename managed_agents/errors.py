"""The one error type every refusal raises, defined at the bottom layer so every layer can raise it.

Services refuse with ``DomainError``: what was refused, why, and what to do
next. The next step depends on the door (house style 9): the CLI names the
command and flags to type, the web names the button or page to use. So a
refusal that has a door-specific part carries a ``Fix`` with both wordings, and
each door words the refusal its own way:

- ``str(error)`` is the CLI wording (the message plus ``fix.cli``), so the
  operator command, the stdlib client and every log line keep printing the
  command to type;
- ``error.web_message()`` is the web wording (the message plus ``fix.web``),
  which the admin shows (``promptctl.admin.mixins.refusal_text``);
- the API returns both, with ``code`` (a stable slug a program can branch on)
  and ``fields`` (the inputs at fault).

A refusal with no door-specific part is one message, the same on every door.
The gateway's own failures (``GatewayError`` and its kinds) are refusals of
this type too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

_CAMEL_BOUNDARY = re.compile(r"(?<!^)(?=[A-Z])")


@dataclass(frozen=True)
class Fix:
    """The next step of a refusal, worded per door: what to type (``cli``) and what to click (``web``).

    ``link`` is an optional admin URL (name and arguments, for ``reverse``) the
    web wording points at; the admin shows it as a link after the message.
    Either wording may be the whole sentence when the message proper is empty
    (a refusal whose very reason names an input, such as "needs --percent").
    """

    cli: str
    web: str
    link: tuple[str, tuple[Any, ...]] | None = field(default=None)


class DomainError(Exception):
    """A refusal or failure the user can act on; ``str(error)`` is the whole story in the CLI's words.

    ``code`` is a stable slug (defaults to the class's name in snake case),
    ``fields`` the input fields at fault, ``fix`` the next step per door.
    """

    code: str = ""
    fields: tuple[str, ...] = ()
    fix: Fix | None = None

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        fields: Iterable[str] = (),
        fix: Fix | None = None,
    ) -> None:
        super().__init__(message)
        if code:
            self.code = code
        if fields:
            self.fields = tuple(fields)
        if fix is not None:
            self.fix = fix

    @property
    def message(self) -> str:
        """The part of the refusal every door shares (what and why)."""
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return self.cli_message()

    def cli_message(self) -> str:
        """The refusal in the CLI's words: the flags and commands to type next."""
        return _join(self.message, self.fix.cli if self.fix else "")

    def web_message(self) -> str:
        """The refusal in the web's words: the buttons and pages to use next, never a flag."""
        return _join(self.message, self.fix.web if self.fix else "")

    @property
    def error_code(self) -> str:
        """``code``, or the class's name in snake case (``PermissionRefused`` -> ``permission_refused``)."""
        return self.code or _CAMEL_BOUNDARY.sub("_", type(self).__name__).lower()

    def __reduce__(self) -> Any:
        # Keep the structure through pickling (Celery results, multiprocessing): the default
        # reduce would call the class with args only and drop the keyword-only parts.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(cls: type[DomainError], args: tuple[Any, ...], state: dict[str, Any]) -> DomainError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


def _join(message: str, step: str) -> str:
    return f"{message} {step}".strip() if step else message
