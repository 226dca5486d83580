"""Rolling canary counters: what the canary check reads instead of counting the request log."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class CanaryCounter(models.Model):
    """Requests, invalid replies and failed sessions a canary served under one pin revision of one agent.

    The canary check runs on every canary call, so it must cost the same at any
    traffic: it reads this one row (a unique key) instead of counting every
    logged request of the pin revision. The row is incremented with ``F()`` in
    the transaction that inserts the log row (``triage.services.serving.triage_record``),
    so it always equals a count over the log; a test compares the two. It is a
    derived roll-up of the immutable log (rebuildable from it, as migration
    0009 does), so it has no history of its own.
    """

    agent = models.ForeignKey("promptctl.Agent", on_delete=models.PROTECT, related_name="+", editable=False)
    pin_revision = models.PositiveBigIntegerField(editable=False)
    requests = models.PositiveBigIntegerField(default=0, editable=False)
    invalid = models.PositiveBigIntegerField(default=0, editable=False)
    errors = models.PositiveBigIntegerField(default=0, editable=False)

    class Meta:
        verbose_name = "canary counter"
        constraints = [
            models.UniqueConstraint(fields=["agent", "pin_revision"], name="canarycounter_one_per_pin_revision"),
            models.CheckConstraint(
                condition=Q(invalid__lte=models.F("requests")) & Q(errors__lte=models.F("requests")),
                name="canarycounter_parts_within_requests",
            ),
        ]

    def __str__(self) -> str:
        return f"canary counts of agent {self.agent_id} @ pin revision {self.pin_revision}"
