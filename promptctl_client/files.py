"""Files sent to the server, checked here first with the server's rules and words (promptctl/inputs.py).

A copy of the few cheap rules, not an import (this is another process, often
on another machine): read in chunks and stop at the cap, strict UTF-8 with
the offset of the first bad byte, no NUL character. The server checks again;
the caps here are the server's defaults, so a server configured with larger
caps may still accept what is refused here only if the same variable
(``PROMPTCTL_MAX_PROMPT_BYTES``, ``PROMPTCTL_MAX_TESTSET_BYTES``) is raised
where the client runs too.
"""

from __future__ import annotations

import os

from promptctl_client.transport import ClientError

CHUNK_BYTES = 1 << 20
CAPS = {"PROMPTCTL_MAX_PROMPT_BYTES": 100_000, "PROMPTCTL_MAX_TESTSET_BYTES": 20_000_000}


def cap_for(setting: str) -> int:
    try:
        return int(os.environ.get(setting, "") or CAPS[setting])
    except ValueError:
        return CAPS[setting]


def size_text(size: int) -> str:
    """``100 KB``, ``20 MB``: caps as people write them (1 KB = 1,000 bytes)."""
    for unit, factor in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if size >= factor and size % (factor // 10) == 0:
            return f"{size / factor:g} {unit}"
    return f"{size:,} bytes"


def file_read_capped(path: str, *, what: str, setting: str) -> bytes:
    cap = cap_for(setting)
    chunks: list[bytes] = []
    total = 0
    try:
        with open(path, "rb") as handle:
            while total <= cap:
                chunk = handle.read(min(CHUNK_BYTES, cap + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
    except IsADirectoryError:
        raise ClientError(f"Cannot read the {what} from {path!r}: it is a directory; give a file.")
    except OSError as error:
        raise ClientError(f"Cannot read the {what} from {path!r}: {error.strerror or error}.")
    if total > cap:
        raise ClientError(
            f"The {what} in {path!r} is larger than the {size_text(cap)} cap: shorten it, or raise {setting} "
            "if it really must be that large."
        )
    return b"".join(chunks)


def text_file_read(path: str, *, what: str, setting: str = "PROMPTCTL_MAX_PROMPT_BYTES") -> str:
    """The file as text: capped, strict UTF-8 (a leading byte-order mark dropped), no NUL."""
    data = file_read_capped(path, what=what, setting=setting)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ClientError(
            f"The {what} in {path!r} is not UTF-8 text: byte {error.start} (line {line}) is "
            f"0x{data[error.start]:02x}; save the file as UTF-8 and try again."
        )
    position = text.find("\x00")
    if position >= 0:
        raise ClientError(
            f"The {what} in {path!r} holds a NUL character (\\u0000) at character {position}, "
            "which the database cannot store: remove it and try again."
        )
    return text


def config_file_read(path: str) -> dict:
    """A configuration file (TOML) as the JSON the server takes: ``system_file`` read, relative to the file.

    Parsed here with the standard library (``tomllib``); every other rule (the
    SDK's parameter types, unknown keys, limits) is the server's, checked before
    it sends anything (``promptctl/config_files.py``).
    """
    import tomllib

    text = text_file_read(path, what="agent configuration")
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ClientError(f"{path!r} is not valid TOML: {error}. Fix the file and try again.")
    if "system_file" in config:
        if "system" in config:
            raise ClientError(
                f"{path!r} sets both `system` and `system_file`: keep one (the prompt inline, or a path to it)."
            )
        relative = config.pop("system_file")
        if not isinstance(relative, str) or not relative.strip():
            raise ClientError(f"{path!r}: `system_file` must be a path relative to the configuration file.")
        config["system"] = text_file_read(os.path.join(os.path.dirname(path) or ".", relative), what="system prompt")
    return config
