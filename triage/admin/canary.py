"""Canary checks: the numbers that ended a canary and the change request promptctl filed, read-only."""

from __future__ import annotations

from django.contrib import admin

from promptctl.admin import ReadOnlyAdminMixin
from triage.models import CanaryCheck


@admin.register(CanaryCheck)
class CanaryCheckAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "agent", "canary_version", "summary_text", "end_change")
    list_select_related = ("agent", "canary_version", "end_change", "end_change__agent", "end_change__target_version")
    fields = (
        "agent",
        "channel",
        "canary_change",
        "pin_revision",
        "canary_version",
        "canary_percent",
        "requests",
        "invalid",
        "errors",
        "max_invalid_rate",
        "max_error_rate",
        "end_change",
        "created_at",
    )
    readonly_fields = fields

    @admin.display(description="numbers")
    def summary_text(self, check: CanaryCheck) -> str:
        return check.summary()
