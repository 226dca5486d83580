"""CLI helpers shared by the test packages (no tests or fixtures here): acting with a person's own token.

``manage.py promptctl`` acts as the owner of ``$PROMPTCTL_TOKEN``; ``--as USER``
only asserts who that is. Tests that run a command "as rita" give it rita's
own token, as rita at her keyboard would: ``token_env_for_as(args)`` makes a
token for the user ``--as`` names and sets ``PROMPTCTL_TOKEN`` for the call.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

from django.contrib.auth import get_user_model

from promptctl import services

TOKEN_ENV = "PROMPTCTL_TOKEN"


def token_secret_for(user: Any, *, read_only: bool = False, expires_in_days: int | None = 1) -> str:
    """A fresh token of ``user``'s own (they create it for themselves)."""
    issued = services.token_create(
        user=user, actor=user, name=f"test-{uuid.uuid4().hex[:8]}", read_only=read_only, expires_in_days=expires_in_days
    )
    return issued.secret


@contextmanager
def token_env(secret: str | None) -> Iterator[None]:
    """``PROMPTCTL_TOKEN`` set to ``secret`` (or unset, for None) for the block, restored after."""
    saved = os.environ.get(TOKEN_ENV)
    if secret is None:
        os.environ.pop(TOKEN_ENV, None)
    else:
        os.environ[TOKEN_ENV] = secret
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(TOKEN_ENV, None)
        else:
            os.environ[TOKEN_ENV] = saved


def token_env_for_as(args: Sequence[str]):
    """The token of the user ``--as`` names in ``args`` (if any, and if they exist), set for one call."""
    args = list(args)
    if "--as" not in args or os.environ.get(TOKEN_ENV):
        return nullcontext()
    user = get_user_model().objects.filter(username=args[args.index("--as") + 1], is_active=True).first()
    if user is None:
        return nullcontext()
    return token_env(token_secret_for(user))


def cli_run(*args: str) -> tuple[int, str, str]:
    """``manage.py promptctl ARGS`` in process, acting as ``--as``'s token: (exit code, stdout, stderr)."""
    import io

    from django.core.management import call_command

    out, err = io.StringIO(), io.StringIO()
    try:
        with token_env_for_as(args):
            call_command("promptctl", *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        return int(exit_.code), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()
