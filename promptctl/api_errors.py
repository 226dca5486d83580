"""The JSON body of a domain refusal on the API: both doors' wordings, a stable code, the fields at fault.

The API serves two kinds of caller: the stdlib client and scripts (a CLI: they
print ``detail``, the CLI wording, word for word what ``manage.py promptctl``
prints) and web front ends (which show ``web_message``: buttons and pages, no
flags). ``code`` is the refusal's stable slug, ``fields`` the inputs at fault,
``fix`` the next step per door (``link`` is the admin page that fixes it, when
there is one). docs/API.md documents the shape.
"""

from __future__ import annotations

from typing import Any

from django.urls import NoReverseMatch, reverse

from promptctl.errors import DomainError


def refusal_body(refusal: DomainError) -> dict[str, Any]:
    """``{"detail", "code", "message", "web_message", "fields", "fix", "errors"}`` for ``refusal``."""
    fix = refusal.fix
    return {
        "detail": refusal.cli_message(),
        "code": refusal.error_code,
        "message": refusal.cli_message(),
        "web_message": refusal.web_message(),
        "fields": list(refusal.fields),
        "fix": None if fix is None else {"cli": fix.cli, "web": fix.web, "link": _link(fix.link)},
        "errors": [],
    }


def _link(link: tuple[str, tuple[Any, ...]] | None) -> str | None:
    if link is None:
        return None
    name, args = link
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None
