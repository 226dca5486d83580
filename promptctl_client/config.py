"""Where the server and the token come from: ``PROMPTCTL_URL`` and ``PROMPTCTL_TOKEN``, then the config file.

Each variable wins over the file on its own, so ``PROMPTCTL_URL=... promptctl
...`` can point a stored token at another server. ``promptctl login`` writes
``$XDG_CONFIG_HOME/promptctl/config.json`` (``~/.config/promptctl/config.json``
when XDG_CONFIG_HOME is unset or empty): a JSON object ``{"url", "token"}``,
mode 0600 in a directory made 0700, because the token acts as its owner. The
file is written to a temporary name first and renamed, so a crash never leaves
half a token behind, and it is never readable by others even for a moment.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

API_PREFIX = "/api/v1"


class ConfigError(Exception):
    """A problem with the configuration, worded as one line for people."""


@dataclass(frozen=True)
class Settings:
    url: str  # the server's base URL, without /api/v1
    token: str
    url_source: str  # "PROMPTCTL_URL" or the config file's path: named in connection errors
    token_source: str


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "promptctl" / "config.json"


def url_normalize(url: str) -> str:
    """``http://host:8000/`` and ``http://host:8000/api/v1`` both as ``http://host:8000``."""
    url = url.strip().rstrip("/")
    if url.endswith(API_PREFIX):
        url = url[: -len(API_PREFIX)].rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"PROMPTCTL_URL must start with http:// or https:// (got {url!r}).")
    return url


def config_read() -> dict:
    path = config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise ConfigError(f"Cannot read {path}: {error.strerror or error}; fix it or run `promptctl logout`.")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object; run `promptctl login --url URL` again.")
    return data


def settings_resolve() -> Settings:
    """The URL and token to use, or a ConfigError saying how to provide them."""
    stored = {}
    url, token = os.environ.get("PROMPTCTL_URL", ""), os.environ.get("PROMPTCTL_TOKEN", "")
    if not (url and token):
        stored = config_read()
    path = str(config_path())
    url_source, token_source = "PROMPTCTL_URL", "PROMPTCTL_TOKEN"
    if not url:
        url, url_source = str(stored.get("url") or ""), path
    if not token:
        token, token_source = str(stored.get("token") or ""), path
    if not url or not token:
        missing = " and ".join(
            name for name, value in (("PROMPTCTL_URL", url), ("PROMPTCTL_TOKEN", token)) if not value
        )
        raise ConfigError(
            f"No server configured ({missing} not set, and not in {path}): "
            "export PROMPTCTL_URL and PROMPTCTL_TOKEN, or run `promptctl login --url URL`."
        )
    return Settings(url=url_normalize(url), token=token.strip(), url_source=url_source, token_source=token_source)


def config_write(*, url: str, token: str) -> Path:
    """Store ``{url, token}`` readable by this user only (directory 0700, file 0600)."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump({"url": url, "token": token}, handle, indent=2)
            handle.write("\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def config_remove() -> Path | None:
    """Delete the config file; its path if there was one."""
    path = config_path()
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    return path
