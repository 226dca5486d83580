"""Deployment bindings: a Managed Agents deployment that follows one agent's channel pin."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from promptctl.models.agents import Agent
from promptctl.models.common import PRODUCTION


class DeploymentBinding(models.Model):
    """A remote deployment bound to an agent and a channel: it runs the version that channel's pin names.

    ``set_version`` is the version promptctl last put on the deployment (None
    until the first apply or restore reaches it); ``seen_*`` is what the last
    read of the server showed. ``state`` is promptctl's reading of the two:
    ``in_step`` (at the version promptctl set), ``behind`` (an apply could not
    move it: a retry finishes it), ``unpinned`` (follows the agent's latest
    version; the next apply pins it), or ``drifted`` (changed, re-pinned to
    latest, paused or archived outside promptctl; ``problem`` says how).
    """

    class State(models.TextChoices):
        IN_STEP = "in_step", "in step with the pin"
        BEHIND = "behind", "an apply could not move it"
        UNPINNED = "unpinned", "follows latest (not pinned yet)"
        DRIFTED = "drifted", "changed outside promptctl"

    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="deployment_bindings", editable=False)
    channel = models.SlugField(max_length=50, default=PRODUCTION, editable=False)
    deployment_id = models.CharField(
        max_length=200, unique=True, editable=False, help_text="the deployment's id on Managed Agents"
    )
    name = models.CharField(
        max_length=200, blank=True, editable=False, help_text="the deployment's name when last read"
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.UNPINNED, editable=False)
    problem = models.TextField(
        blank=True, editable=False, help_text="what is wrong with it, in words; empty when in step"
    )
    set_version = models.BigIntegerField(
        null=True, blank=True, editable=False, help_text="the version promptctl last put on the deployment"
    )
    seen_version = models.BigIntegerField(
        null=True, blank=True, editable=False, help_text="the version last read on the server (empty: follows latest)"
    )
    seen_status = models.CharField(
        max_length=16, blank=True, editable=False, help_text="active, paused, archived or missing, when last read"
    )
    seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    bound_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", editable=False)
    bound_at = models.DateTimeField(default=timezone.now, editable=False)
    history = HistoricalRecords()

    class Meta:
        ordering = ["agent_id", "channel", "deployment_id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["in_step", "behind", "unpinned", "drifted"]),
                name="deploymentbinding_state_valid",
            ),
            models.CheckConstraint(
                condition=~Q(deployment_id="") & ~Q(channel=""),
                name="deploymentbinding_ids_not_blank",
                violation_error_message="A binding names a deployment id and a channel.",
            ),
            models.CheckConstraint(
                condition=Q(set_version__isnull=True) | Q(set_version__gte=1),
                name="deploymentbinding_set_version_positive",
            ),
            models.CheckConstraint(
                condition=Q(state="in_step") | ~Q(problem=""),
                name="deploymentbinding_problem_said",
                violation_error_message="A binding that is not in step says what is wrong with it.",
            ),
            models.CheckConstraint(
                condition=~Q(state="in_step") | Q(set_version__isnull=False),
                name="deploymentbinding_in_step_was_set",
                violation_error_message="A binding is in step only at a version promptctl set.",
            ),
        ]

    def __str__(self) -> str:
        label = self.name or self.deployment_id
        return f"{label} → {self.agent.name}/{self.channel}"
