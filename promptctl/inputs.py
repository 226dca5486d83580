"""Reading what people hand promptctl: files and text that must be storable before anything is sent or saved.

The rules, each refused with one line that says what was wrong and what to do
(``DomainError``), never a traceback:

- a file is read in chunks and reading stops at its cap, so ``/dev/zero`` or
  a 23 GB file is refused after the cap, not after memory runs out;
- text is UTF-8, strictly: the message names the byte offset of the first
  byte that is not (a leading byte-order mark is dropped);
- no NUL characters: PostgreSQL cannot store them in text or JSON, so they
  would fail only after a remote version was made;
- no lone surrogates (``\\ud800`` written as a JSON escape): they cannot be
  encoded as UTF-8 at all;
- JSON nesting deeper than the cap is refused before ``json.loads`` sees it
  (Python's parser recurses, and a deep enough document is a ``RecursionError``).

The caps are settings (``PROMPTCTL_MAX_PROMPT_BYTES``, ``PROMPTCTL_MAX_TESTSET_BYTES``,
``PROMPTCTL_MAX_TESTSET_CASES``, ``PROMPTCTL_MAX_JSON_DEPTH``; docs/OPERATIONS.md).
The CLIs and the test set import share this module; the Managed Agents limits
are in ``managed_agents.validation``, which uses the same text rules.
"""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

from managed_agents.validation import text_problem
from promptctl.errors import DomainError

CHUNK_BYTES = 1 << 20
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")

__all__ = [
    "file_read_capped",
    "json_too_deep",
    "size_text",
    "text_decode",
    "text_file_read",
    "text_problem",
    "text_require",
]


def size_text(size: int) -> str:
    """``100 KB``, ``20 MB``: caps as people write them (1 KB = 1,000 bytes)."""
    for unit, factor in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if size >= factor and size % (factor // 10) == 0:
            return f"{size / factor:g} {unit}"
    return f"{size:,} bytes"


def file_read_capped(path: str, *, cap: int, what: str, setting: str) -> bytes:
    """The file's bytes, read in chunks and refused as soon as they pass ``cap`` (named with its ``setting``)."""
    chunks: list[bytes] = []
    total = 0
    try:
        with Path(path).open("rb") as handle:
            while total <= cap:
                chunk = handle.read(min(CHUNK_BYTES, cap + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
    except IsADirectoryError as error:
        raise DomainError(f"Cannot read the {what} from {path!r}: it is a directory; give a file.") from error
    except OSError as error:
        raise DomainError(f"Cannot read the {what} from {path!r}: {error.strerror or error}.") from error
    if total > cap:
        raise DomainError(
            f"The {what} in {path!r} is larger than the {size_text(cap)} cap: shorten it, or raise {setting} "
            "if it really must be that large."
        )
    return b"".join(chunks)


def text_decode(data: bytes, *, what: str, source: str) -> str:
    """``data`` as strict UTF-8 (a leading byte-order mark dropped), or a refusal naming the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DomainError(
            f"The {what} in {source} is not UTF-8 text: byte {error.start} (line {line}) is "
            f"0x{data[error.start]:02x}; save the file as UTF-8 and try again."
        ) from error


def text_require(text: str, *, what: str) -> str:
    """``text`` if it holds no NUL and no lone surrogate, else a refusal saying where and what to do."""
    problem = text_problem(text)
    if problem:
        raise DomainError(f"The {what} {problem}: remove it and try again.")
    return text


def text_file_read(path: str, *, what: str) -> str:
    """A prompt-sized text file: capped at ``PROMPTCTL_MAX_PROMPT_BYTES``, strict UTF-8, no NUL."""
    data = file_read_capped(
        path, cap=settings.PROMPTCTL_MAX_PROMPT_BYTES, what=what, setting="PROMPTCTL_MAX_PROMPT_BYTES"
    )
    return text_require(text_decode(data, what=what, source=repr(path)), what=f"{what} in {path!r}")


def json_too_deep(text: str, *, limit: int) -> bool:
    """Whether the JSON document ``text`` nests arrays and objects deeper than ``limit`` (brackets in strings do not count).

    Ordinary lines cost two ``str.count`` calls: with no more opening brackets
    than ``limit``, the document cannot nest deeper.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub('""', text)):
        depth += 1 if bracket in "[{" else -1
        if depth > limit:
            return True
    return False
