"""Version intents: promptctl's note that it is making a server version, written before the remote call.

``version_create`` calls Managed Agents outside any database transaction, then
records the version it made in a short one. Between the two, a sync may find
the new version on the server, and a crash or a database failure may leave it
unrecorded. The intent, saved in its own short transaction before the remote
call, lets both tell promptctl's own version from a change made outside: the
update carries the intent's marker in its metadata, and a server version above
the intent's base that carries the marker is promptctl's (recorded with the
intent's actor), whoever records it first.

An intent is open until it is resolved: made (the server holds its version,
recorded or named unstorable), or not made (a refusal; or a sync that finds no
marked version although the server is past the intent's base, so the
conditional update can never land; or the intent is older than any update can
take). A version that carries the marker of an intent resolved as not made is
still promptctl's: the marker is proof, and the intent becomes made.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from promptctl.models.agents import Agent


class VersionIntent(models.Model):
    """One ``version_create`` in flight or done: the agent, its marker, the base version, who, and how it ended."""

    class Outcome(models.TextChoices):
        OPEN = "open", "in flight or unresolved"
        MADE = "made", "the server made its version"
        NOT_MADE = "not_made", "the server made no version for it"

    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="version_intents", editable=False)
    marker = models.CharField(
        max_length=64, unique=True, editable=False, help_text="the client-generated marker the update carries"
    )
    base_version = models.BigIntegerField(editable=False, help_text="the version the conditional update was made on")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", editable=False)
    started_at = models.DateTimeField(default=timezone.now, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.OPEN, editable=False)
    version_number = models.BigIntegerField(
        null=True, blank=True, editable=False, help_text="the server version it made, once known"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome__in=["open", "made", "not_made"]), name="versionintent_outcome_valid"
            ),
            models.CheckConstraint(
                condition=(
                    Q(outcome="open", finished_at__isnull=True, version_number__isnull=True)
                    | Q(outcome="made", finished_at__isnull=False, version_number__isnull=False)
                    | Q(outcome="not_made", finished_at__isnull=False, version_number__isnull=True)
                ),
                name="versionintent_outcome_consistent",
            ),
        ]
        indexes = [models.Index(fields=["agent", "outcome"], name="versionintent_agent_outcome")]

    def __str__(self) -> str:
        return f"{self.agent.name} on v{self.base_version} ({self.outcome})"
