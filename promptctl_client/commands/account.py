"""``promptctl login|logout|whoami``: which server, and who the token says you are."""

from __future__ import annotations

import os
import sys

from promptctl_client.output import short_time


def register(groups) -> None:
    login = groups.add_parser(
        "login", help="check a personal token with the server and store it (reads the token from stdin or a prompt)"
    )
    login.add_argument("--url", default=os.environ.get("PROMPTCTL_URL"), help="the server, e.g. http://127.0.0.1:8000")
    login.set_defaults(handler=login_handler)
    logout = groups.add_parser("logout", help="forget the stored server and token")
    logout.set_defaults(handler=logout_handler)
    whoami = groups.add_parser("whoami", help="who the token acts as, its roles and expiry")
    whoami.set_defaults(handler=whoami_handler)


def _token_read() -> str:
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("Personal token (pctlu_…): ")
    return sys.stdin.readline()


def _describe(me: dict) -> str:
    token = me.get("token") or {}
    roles = ", ".join(me.get("roles") or []) or "no roles"
    flags = "read-only" if token.get("read_only") else "read-write"
    expires = f"expires {short_time(token['expires_at'])}" if token.get("expires_at") else "never expires"
    return f"{me.get('username')} ({roles}); token {token.get('name', '?')!r} {token.get('prefix', '')}… {flags}, {expires}"


def login_handler(options, ctx):
    from promptctl_client.config import Settings, config_write, url_normalize
    from promptctl_client.transport import Api, ClientError

    if not options.url:
        raise ClientError("Say which server: `promptctl login --url http://HOST:PORT` (or set PROMPTCTL_URL).")
    url = url_normalize(options.url)
    token = _token_read().strip()
    if not token:
        raise ClientError("No token given: paste a personal token (pctlu_…) on standard input.")
    me = Api(Settings(url=url, token=token, url_source="--url", token_source="the token given")).get("/me")
    path = config_write(url=url, token=token)
    ctx.out.human(f"Logged in to {url} as {_describe(me)}. Stored in {path} (mode 0600).")
    return {"url": url, "config": str(path), "me": me}


def logout_handler(options, ctx):
    from promptctl_client.config import config_path, config_remove

    removed = config_remove()
    if removed:
        ctx.out.human(f"Removed {removed}; the token itself still works until it expires or is revoked.")
    else:
        ctx.out.human(f"Nothing to remove: {config_path()} does not exist.")
    if os.environ.get("PROMPTCTL_TOKEN"):
        ctx.out.human("Note: PROMPTCTL_TOKEN is still set in this shell.")
    return {"removed": str(removed) if removed else None}


def whoami_handler(options, ctx):
    me = ctx.api.get("/me")
    ctx.out.human(f"{_describe(me)} at {ctx.api.settings.url}")
    return me
