"""Logging Django's own connection in as another PostgreSQL role (no tests or fixtures here)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def connected_as(role: str) -> Iterator[None]:
    """Django's default connection logs in as ``role`` inside the block, then as its own user again."""
    from django.db import connection

    connection.close()
    previous = connection.settings_dict["USER"]
    connection.settings_dict["USER"] = role
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["USER"] = previous
