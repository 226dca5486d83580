"""How admin pages show values: one helper per kind, used by every app's list and detail pages.

- Times to the second with the time zone (``when``), the same format the
  locale module ``config/formats/en/formats.py`` gives every datetime field.
- Long text cut to a column's width with the full value on hover (``truncated``),
  so list pages fit a 1366 px screen without hiding columns.
- Shares as percentages with one decimal (``percent``) and plain numbers with a
  fixed number of decimals (``decimal``): never a raw float such as 0.7319767280000633.

The template filters in ``promptctl/templatetags/promptctl_display.py`` call these.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString

EMPTY = "—"
TIME_FORMAT = "Y-m-d H:i:s T"


def when(value: datetime | None) -> str:
    """``2026-11-30 21:09:43 UTC``: to the second, in the site's time zone, naming it."""
    if value is None:
        return EMPTY
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return date_format(value, TIME_FORMAT)


def truncated(value: Any, length: int = 40) -> str | SafeString:
    """``value`` cut to ``length`` characters with an ellipsis; the full text is the element's title (on hover)."""
    if value is None or value == "":
        return EMPTY
    text = str(value)
    if len(text) <= length:
        return text
    return format_html('<span class="promptctl-truncated" title="{}">{}…</span>', text, text[: length - 1].rstrip())


def percent(value: float | None, *, digits: int = 1) -> str:
    """A share in 0..1 as ``73.2 %``."""
    if value is None:
        return EMPTY
    return f"{value * 100:.{digits}f} %"


def decimal(value: float | None, *, digits: int = 3) -> str:
    """A number with ``digits`` decimals (``0.732``); integers stay integers."""
    if value is None:
        return EMPTY
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:.{digits}f}"
