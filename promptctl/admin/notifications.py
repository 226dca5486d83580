"""Webhooks (made and edited by admins through their services) and the read-only log of their deliveries.

- A webhook's secret is shown once, in the message after it is made or rotated;
  the list and the form show it masked. Deleting is off: deactivate instead, so
  the delivery log keeps its webhook.
- Deliveries are read-only; "Retry now" calls ``webhook_delivery_retry`` for
  each selected row and shows a refusal in the web's words (``refusal_text``).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from promptctl import services
from promptctl.admin import display
from promptctl.admin.mixins import ReadOnlyHistoryAdmin, ServiceLoggedAdmin, refusal_text
from promptctl.admin.paging import EstimatedCountPaginator, IndexedValuesListFilter
from promptctl.errors import DomainError
from promptctl.models import Webhook, WebhookDelivery
from promptctl.services.webhooks import EVENTS, webhook_fields_clean, webhook_secret_masked


class WebhookForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https", help_text="http(s) URL that receives a POST per event")
    events = forms.MultipleChoiceField(
        choices=[(name, name) for name in EVENTS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="none ticked: every event",
    )
    rotate_secret = forms.BooleanField(
        required=False, help_text="make a new secret (shown once); the receiver must be given it"
    )

    class Meta:
        model = Webhook
        fields = ("url", "events", "format", "agent", "active")

    def clean(self):
        data = super().clean()
        try:
            webhook_fields_clean(
                url=data.get("url") or "", events=data.get("events") or [], format=data.get("format") or ""
            )
        except DomainError as refusal:
            raise ValidationError(refusal_text(refusal)) from refusal
        return data


@admin.register(Webhook)
class WebhookAdmin(ServiceLoggedAdmin, ReadOnlyHistoryAdmin):
    form = WebhookForm
    list_display = ("url", "format", "agent", "events_text", "active", "secret_masked", "created_at")
    list_filter = ("active", "format")
    list_select_related = ("agent",)
    readonly_fields = ("secret_masked", "created_at")

    def get_fields(self, request, obj=None):
        fields = ["url", "events", "format", "agent", "active"]
        return fields + ["rotate_secret", "secret_masked", "created_at"] if obj else fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="events")
    def events_text(self, webhook: Webhook) -> str:
        return ", ".join(webhook.events) or "all"

    @admin.display(description="secret")
    def secret_masked(self, webhook: Webhook) -> str:
        return webhook_secret_masked(webhook.secret)

    def save_model(self, request, obj, form, change) -> None:
        fields = {
            "url": form.cleaned_data["url"],
            "events": form.cleaned_data.get("events") or [],
            "format": form.cleaned_data["format"],
            "agent": form.cleaned_data.get("agent"),
            "active": form.cleaned_data.get("active", False),
        }
        if change:
            issued = services.webhook_update(
                webhook=obj, actor=request.user, rotate_secret=form.cleaned_data.get("rotate_secret", False), **fields
            )
        else:
            issued = services.webhook_create(actor=request.user, **fields)
        obj.pk, obj.secret = issued.webhook.pk, issued.webhook.secret
        if issued.secret:
            self.message_user(
                request,
                f"The webhook's signing secret, shown this once: {issued.secret} — give it to the receiver "
                "(docs/OPERATIONS.md, Notifications, says how it verifies a delivery).",
                messages.WARNING,
            )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    # Chosen to fit a 1366 px screen: the receiver's URL and the error are cut (full text on hover);
    # the next attempt's time is on the delivery's own page.
    list_display = (
        "id",
        "event",
        "receiver",
        "status",
        "attempts",
        "last_response_code",
        "last_error_short",
        "created_at",
        "delivered_at",
    )
    list_filter = ("status", ("event", IndexedValuesListFilter))
    list_select_related = ("webhook",)
    # One row per event per webhook, for as long as the installation runs: no full count per page.
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    readonly_fields = (
        "webhook",
        "event",
        "status",
        "attempts",
        "last_response_code",
        "last_error",
        "next_attempt_at",
        "created_at",
        "delivered_at",
        "payload",
    )
    actions = ["retry_now"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("promptctl.change_webhook")

    @admin.display(description="last error")
    def last_error_short(self, delivery: WebhookDelivery) -> str:
        return display.truncated(delivery.last_error, 50)

    @admin.display(description="webhook", ordering="webhook__url")
    def receiver(self, delivery: WebhookDelivery) -> str:
        return display.truncated(delivery.webhook.url, 36)

    @admin.action(description="Retry now", permissions=["retry"])
    def retry_now(self, request, queryset) -> None:
        queued = 0
        for delivery in queryset.order_by("pk"):
            try:
                services.webhook_delivery_retry(delivery=delivery, actor=request.user)
                queued += 1
            except DomainError as refusal:
                self.message_user(request, refusal_text(refusal), messages.ERROR)
        if queued:
            self.message_user(request, f"{queued} deliver{'y' if queued == 1 else 'ies'} queued for another attempt.")
