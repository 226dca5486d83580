"""Jobs: asynchronous triage calls and how each ended, read-only."""

from __future__ import annotations

from django.contrib import admin

from promptctl.admin import ReadOnlyAdminMixin, ReadOnlyHistoryAdmin
from triage.models import TriageJob


@admin.register(TriageJob)
class TriageJobAdmin(ReadOnlyAdminMixin, ReadOnlyHistoryAdmin):
    list_display = ("id", "agent", "api_key", "status", "attempts", "created_at", "finished_at", "error_code")
    list_filter = ("status", "agent")
    list_select_related = ("agent", "api_key")
    fields = (
        "id",
        "agent",
        "api_key",
        "status",
        "attempts",
        "request",
        "error_code",
        "error_message",
        "subject",
        "body",
        "request_key",
        "created_at",
        "started_at",
        "finished_at",
    )
    readonly_fields = fields
