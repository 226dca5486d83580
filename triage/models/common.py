"""The outcomes a triage call can end in, shared by the request log, shadow results and canary checks."""

from __future__ import annotations

from django.db import models


class Outcome(models.TextChoices):
    """How one session for a triage call ended."""

    OK = "ok", "valid verdict"
    INVALID = "invalid", "invalid output"
    UNAVAILABLE = "unavailable", "upstream unavailable"
    TIMEOUT = "timeout", "session timed out"
    REFUSED = "refused", "upstream refused"
    ABANDONED = "abandoned", "caller went away"


ERROR_OUTCOMES = (Outcome.UNAVAILABLE, Outcome.TIMEOUT, Outcome.REFUSED)
OUTCOME_VALUES = [value for value, _label in Outcome.choices]
