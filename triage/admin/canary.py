"""The canary watch: each agent's canary policy (saved through ``canary_policy_save``), checks and comparisons.

Canary checks and comparisons are evidence, read-only. A policy form edits
the watch's settings; who granted a standing auto-end is shown, never edited.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.http import HttpResponseRedirect

from promptctl.admin import ReadOnlyAdminMixin, ReadOnlyHistoryAdmin, display
from promptctl.admin.mixins import ServiceLoggedAdmin, refusal_show
from promptctl.errors import DomainError
from triage import services
from triage.models import CanaryCheck, CanaryComparison, CanaryPolicy


@admin.register(CanaryCheck)
class CanaryCheckAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "agent", "canary_version", "summary_text", "auto_ended", "end_change")
    list_select_related = (
        "agent",
        "canary_version",
        "canary_version__agent",
        "end_change",
        "end_change__agent",
        "end_change__target_version",
    )
    fields = (
        "agent",
        "channel",
        "canary_change",
        "pin_revision",
        "canary_version",
        "canary_percent",
        "tripped_by",
        "requests",
        "invalid",
        "errors",
        "max_invalid_rate",
        "max_error_rate",
        "compared",
        "disagreements",
        "max_disagreement_rate",
        "min_compared",
        "labels",
        "examples",
        "auto_ended",
        "end_change",
        "created_at",
    )
    readonly_fields = fields

    @admin.display(description="numbers")
    def summary_text(self, check: CanaryCheck) -> str:
        return check.summary()


@admin.register(CanaryComparison)
class CanaryComparisonAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "agent", "request", "canary_verdict", "production_version", "production_verdict")
    list_display += ("agrees",)
    list_filter = ("agrees",)
    list_select_related = ("agent", "request", "request__version", "production_version", "production_version__agent")
    fields = (
        "request",
        "agent",
        "pin_revision",
        "production_version",
        "outcome",
        "team",
        "priority",
        "problem",
        "reply",
        "session_id",
        "latency_ms",
        "agrees",
        "created_at",
    )
    readonly_fields = fields

    @admin.display(description="canary said")
    def canary_verdict(self, comparison: CanaryComparison) -> str:
        return f"{comparison.request.team}/{comparison.request.priority}"

    @admin.display(description="production said")
    def production_verdict(self, comparison: CanaryComparison) -> str:
        return f"{comparison.team}/{comparison.priority}" if comparison.outcome == "ok" else comparison.outcome


class CanaryPolicyForm(forms.ModelForm):
    class Meta:
        model = CanaryPolicy
        fields = ("agent", "compare_percent", "disagreement_limit", "min_compared", "auto_end")


@admin.register(CanaryPolicy)
class CanaryPolicyAdmin(ServiceLoggedAdmin, ReadOnlyHistoryAdmin):
    form = CanaryPolicyForm
    list_display = ("agent", "compare_percent", "disagreement_limit", "min_compared", "auto_end", "granted")
    list_select_related = ("agent", "auto_end_granted_by")
    readonly_fields = ("granted", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (("agent",) if obj is not None else ())

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="auto-end granted by")
    def granted(self, policy: CanaryPolicy) -> str:
        if not policy.auto_end_granted_by_id:
            return "—"
        return f"{policy.auto_end_granted_by.username} at {display.when(policy.auto_end_granted_at)}"

    def save_model(self, request, obj: CanaryPolicy, form, change) -> None:
        services.canary_policy_save(policy=obj, actor=request.user)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as refusal:
            refusal_show(request, refusal)
            return HttpResponseRedirect(request.get_full_path())
