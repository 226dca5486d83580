"""Who may call the triage API (keys) and where it routes (an agent's routing policy)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords


class ApiKey(models.Model):
    """A caller's credential for the triage API; only its hash is stored."""

    name = models.SlugField(max_length=100, unique=True, help_text="who or what uses the key, e.g. helpdesk-prod")
    prefix = models.CharField(
        max_length=16, editable=False, db_index=True, help_text="the key's first characters, to recognise it by"
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    all_agents = models.BooleanField(
        default=False, editable=False, help_text="the key may call every agent (else only the agents listed)"
    )
    agents = models.ManyToManyField("promptctl.Agent", blank=True, related_name="api_keys")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(
                condition=Q(revoked_at__isnull=True, revoked_by__isnull=True)
                | Q(revoked_at__isnull=False, revoked_by__isnull=False),
                name="apikey_revoked_has_time_and_actor",
            ),
            models.CheckConstraint(condition=Q(key_hash__regex=r"^[0-9a-f]{64}$"), name="apikey_hash_is_sha256_hex"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ApiKeyUsage(models.Model):
    """When a key was last used: operational telemetry kept apart so the key's history stays about changes."""

    key = models.OneToOneField(ApiKey, on_delete=models.CASCADE, related_name="usage", editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key usage"

    def __str__(self) -> str:
        return f"{self.key_id} last used {self.last_used_at}"


class RoutingPolicy(models.Model):
    """How the API serves one agent: default agent, canary limits, shadow sampling."""

    agent = models.OneToOneField("promptctl.Agent", on_delete=models.PROTECT, related_name="routing_policy")
    is_default = models.BooleanField(
        default=False, help_text="serve POST /api/v1/triage (without an agent name) with this agent"
    )
    canary_max_invalid_rate = models.FloatField(
        default=0.10, help_text="end the canary when this share of its replies is invalid (0-1)"
    )
    canary_max_error_rate = models.FloatField(
        default=0.05, help_text="end the canary when this share of its sessions fails (0-1)"
    )
    canary_min_requests = models.PositiveIntegerField(
        default=20, help_text="judge a canary only after this many canary requests"
    )
    shadow_version = models.ForeignKey(
        "promptctl.AgentVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="a candidate version run in the background on sampled live tickets (never answers callers)",
    )
    shadow_percent = models.PositiveSmallIntegerField(
        default=0, help_text="share of live tickets also sent to the shadow version (0-100)"
    )
    updated_at = models.DateTimeField(default=timezone.now, editable=False)
    history = HistoricalRecords()

    class Meta:
        verbose_name = "routing policy"
        verbose_name_plural = "routing policies"
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="routingpolicy_one_default"
            ),
            models.CheckConstraint(
                condition=Q(canary_max_invalid_rate__gte=0, canary_max_invalid_rate__lte=1)
                & Q(canary_max_error_rate__gte=0, canary_max_error_rate__lte=1),
                name="routingpolicy_rates_between_0_and_1",
            ),
            models.CheckConstraint(condition=Q(canary_min_requests__gte=1), name="routingpolicy_min_requests_positive"),
            models.CheckConstraint(
                condition=Q(shadow_percent__gte=0, shadow_percent__lte=100), name="routingpolicy_shadow_percent_range"
            ),
            models.CheckConstraint(
                condition=Q(shadow_percent=0) | Q(shadow_version__isnull=False),
                name="routingpolicy_shadow_sampling_needs_version",
            ),
        ]

    def __str__(self) -> str:
        return f"routing of {self.agent}"
