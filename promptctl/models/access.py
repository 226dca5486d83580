"""Personal access tokens, and the webhooks (with their deliveries) that tell reviewers."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from promptctl.models.agents import Agent


class Webhook(models.Model):
    """A receiver told about change requests: a JSON (or Slack) POST signed with its secret (``services.notifications``)."""

    class Format(models.TextChoices):
        JSON = "json", "JSON event"
        SLACK = "slack", "Slack-compatible {text}"

    url = models.URLField(max_length=500, help_text="http(s) URL that receives a POST per event")
    secret = models.CharField(max_length=100, editable=False, help_text="HMAC-SHA256 key; shown once when made")
    events = models.JSONField(default=list, blank=True, help_text="event names to send; empty: every event")
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.PROTECT, related_name="+", help_text="empty: every agent"
    )
    format = models.CharField(max_length=8, choices=Format.choices, default=Format.JSON)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    history = HistoricalRecords(excluded_fields=["secret"])

    class Meta:
        ordering = ["id"]
        constraints = [models.CheckConstraint(condition=Q(format__in=["json", "slack"]), name="webhook_format_valid")]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event for one webhook and every attempt to deliver it (the last response is kept)."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        DELIVERED = "delivered", "delivered"
        FAILED = "failed", "failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.PROTECT, related_name="deliveries", editable=False)
    event = models.CharField(max_length=64, editable=False)
    payload = models.JSONField(editable=False)
    attempts = models.PositiveSmallIntegerField(default=0, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, editable=False)
    last_response_code = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    last_error = models.CharField(max_length=500, blank=True, editable=False, help_text="response excerpt or error")
    next_attempt_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    delivered_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhookdelivery_due"),
            models.Index(fields=["event", "-created_at"], name="webhookdelivery_event"),  # the list's filter
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "delivered", "failed"]), name="webhookdelivery_status_valid"
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} #{self.pk} → {self.webhook.url}"


class PersonalToken(models.Model):
    """A person's (or a bot's) credential for the CLI and the API; only its SHA-256 is stored (``services.tokens``)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="personal_tokens", editable=False
    )
    name = models.CharField(max_length=100, help_text="what the token is for, e.g. laptop or ci")
    prefix = models.CharField(
        max_length=16, editable=False, db_index=True, help_text="the token's first characters, to recognise it by"
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    read_only = models.BooleanField(default=False, editable=False, help_text="refused on every write")
    expires_at = models.DateTimeField(null=True, blank=True, editable=False, help_text="empty: never expires")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False, help_text="to within a minute")
    history = HistoricalRecords(excluded_fields=["key_hash", "last_used_at"])

    class Meta:
        ordering = ["user_id", "name"]
        verbose_name = "personal token"
        constraints = [
            models.CheckConstraint(
                condition=Q(revoked_at__isnull=True, revoked_by__isnull=True)
                | Q(revoked_at__isnull=False, revoked_by__isnull=False),
                name="personaltoken_revoked_has_time_and_actor",
            ),
            models.CheckConstraint(
                condition=Q(key_hash__regex=r"^[0-9a-f]{64}$"), name="personaltoken_hash_is_sha256_hex"
            ),
            models.UniqueConstraint(
                fields=["user", "name"],
                condition=Q(revoked_at__isnull=True),
                name="personaltoken_live_name_unique_per_user",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
