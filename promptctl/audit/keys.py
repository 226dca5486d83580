"""The audit key ring: the secret that MACs the chain lives outside the database.

Rules, and why:

- The key comes from ``PROMPTCTL_AUDIT_KEY`` or the first line of
  ``PROMPTCTL_AUDIT_KEY_FILE``; nothing of it is stored in the database, so a
  database owner who rewrites rows cannot make MACs that verify.
- Older keys stay for verification only: ``PROMPTCTL_AUDIT_KEYS_OLD``
  (comma-separated) and the key file's later lines. Rotation = a new current
  key, the old one moved to the old list; every event names its key's id.
- A key's id is derived from the key (``k-`` and 16 hex digits of a hash), so
  an id can never be reused for a different secret by mistake, and the id
  reveals nothing useful about a long random key.
- In development (``DJANGO_DEBUG`` on, no key configured) settings point the
  key file under ``PROMPTCTL_VAR_DIR`` and the first use creates it, mode 0600.
  Production settings refuse to start without a key (config/settings.py).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

MINIMUM_KEY_LENGTH = 32


class AuditKeyError(RuntimeError):
    """The audit key is missing or unusable; the message says which setting to fix."""


@dataclass(frozen=True)
class AuditKey:
    key_id: str
    secret: bytes = b""

    def __repr__(self) -> str:  # never print the secret
        return f"AuditKey({self.key_id!r})"


@dataclass(frozen=True)
class AuditKeyRing:
    """The current key (it MACs new events and checkpoints) and every key that may verify."""

    current: AuditKey
    by_id: dict[str, AuditKey]

    def get(self, key_id: str) -> AuditKey | None:
        return self.by_id.get(key_id)


def audit_key_id(secret: bytes) -> str:
    return "k-" + hashlib.sha256(b"promptctl audit key id\0" + secret).hexdigest()[:16]


def _key(text: str, source: str) -> AuditKey:
    text = text.strip()
    if len(text) < MINIMUM_KEY_LENGTH:
        raise AuditKeyError(
            f"The audit key from {source} is shorter than {MINIMUM_KEY_LENGTH} characters: use a long random "
            "string, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`."
        )
    secret = text.encode("utf-8")
    return AuditKey(audit_key_id(secret), secret)


def _file_lines(path: Path) -> list[str]:
    return [
        line.strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _generate_key_file(path: Path) -> None:
    """Create ``path`` holding a new random key, mode 0600; if another process won the race, keep its key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(
                "# promptctl audit key (development), made on first use. Never commit it.\n"
                + secrets.token_urlsafe(48)
                + "\n"
            )
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(scratch, path)  # atomic, and fails if the file exists: the first writer's key wins
        except FileExistsError:
            pass
    finally:
        os.unlink(scratch)


_cache: dict[tuple, AuditKeyRing] = {}


def audit_key_ring() -> AuditKeyRing:
    """The key ring from settings, read again whenever the settings or the key file change."""
    inline = getattr(settings, "PROMPTCTL_AUDIT_KEY", "") or ""
    file_name = getattr(settings, "PROMPTCTL_AUDIT_KEY_FILE", "") or ""
    old = tuple(getattr(settings, "PROMPTCTL_AUDIT_KEYS_OLD", ()) or ())
    generate = bool(getattr(settings, "PROMPTCTL_AUDIT_KEY_GENERATE", False))
    stamp: tuple = ()
    if file_name and not inline:
        path = Path(file_name)
        if not path.exists():
            if not generate:
                raise AuditKeyError(
                    f"PROMPTCTL_AUDIT_KEY_FILE names {path}, which does not exist: create it with a long random "
                    "key on its first line, or set PROMPTCTL_AUDIT_KEY."
                )
            _generate_key_file(path)
        status = path.stat()
        stamp = (status.st_mtime_ns, status.st_size, status.st_ino)
    cache_key = (inline, file_name, old, stamp)
    ring = _cache.get(cache_key)
    if ring is not None:
        return ring
    if inline:
        keys = [_key(inline, "PROMPTCTL_AUDIT_KEY")]
    elif file_name:
        lines = _file_lines(Path(file_name))
        if not lines:
            raise AuditKeyError(f"PROMPTCTL_AUDIT_KEY_FILE ({file_name}) holds no key: put one on its first line.")
        keys = [_key(line, f"PROMPTCTL_AUDIT_KEY_FILE line {n}") for n, line in enumerate(lines, 1)]
    else:
        raise AuditKeyError(
            "No audit key: set PROMPTCTL_AUDIT_KEY (or PROMPTCTL_AUDIT_KEY_FILE) to a long random string "
            "kept outside the database."
        )
    keys += [_key(text, "PROMPTCTL_AUDIT_KEYS_OLD") for text in old if text.strip()]
    by_id: dict[str, AuditKey] = {}
    for key in keys:
        by_id.setdefault(key.key_id, key)
    ring = AuditKeyRing(current=keys[0], by_id=by_id)
    _cache.clear()
    _cache[cache_key] = ring
    return ring
