"""Routing policy: an agent's canary limits and shadow sampling, saved through ``routing_policy_save``.

Whether the agent is the default is shown, never edited here: the default
moves only by an approved ``route`` change request.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from promptctl.admin import ReadOnlyHistoryAdmin
from promptctl.admin.mixins import ServiceLoggedAdmin, refusal_show
from promptctl.errors import DomainError
from promptctl.models import AgentVersion
from triage import selectors, services
from triage.models import RoutingPolicy

# --- routing policy ----------------------------------------------------------------------------


class RoutingPolicyForm(forms.ModelForm):
    class Meta:
        model = RoutingPolicy
        fields = (
            "agent",
            "canary_max_invalid_rate",
            "canary_max_error_rate",
            "canary_min_requests",
            "shadow_version",
            "shadow_percent",
        )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        agent_id = self.instance.agent_id if self.instance and self.instance.pk else None
        versions = AgentVersion.objects.select_related("agent").order_by("agent__name", "number")
        if "shadow_version" in self.fields:  # absent on the read-only page of those who may only view
            self.fields["shadow_version"].queryset = versions.filter(agent_id=agent_id) if agent_id else versions


@admin.register(RoutingPolicy)
class RoutingPolicyAdmin(ServiceLoggedAdmin, ReadOnlyHistoryAdmin):
    form = RoutingPolicyForm
    list_display = ("agent", "is_default", "canary_limits", "shadow", "shadow_record", "updated_at")
    list_select_related = ("agent", "shadow_version")
    readonly_fields = ("default_agent", "shadow_record", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (("agent",) if obj is not None else ())

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="default agent")
    def default_agent(self, policy: RoutingPolicy) -> str:
        if policy.is_default:
            return "yes: serves POST /api/v1/triage"
        url = reverse("admin:promptctl_changerequest_add") + (f"?agent={policy.agent_id}" if policy.agent_id else "")
        return format_html(
            'no — the default changes only by an approved change request: <a href="{}">file one</a> '
            "of kind “make default agent”",
            url,
        )

    @admin.display(description="canary limits")
    def canary_limits(self, policy: RoutingPolicy) -> str:
        return (
            f"invalid ≤ {policy.canary_max_invalid_rate:.0%}, errors ≤ {policy.canary_max_error_rate:.0%} "
            f"(after {policy.canary_min_requests} requests)"
        )

    @admin.display(description="shadow")
    def shadow(self, policy: RoutingPolicy) -> str:
        if not policy.shadow_version_id:
            return "—"
        return f"v{policy.shadow_version.number} on {policy.shadow_percent}% of tickets"

    @admin.display(description="shadow record")
    def shadow_record(self, policy: RoutingPolicy) -> str:
        if not policy.shadow_version_id:
            return "—"
        url = reverse("admin:triage_shadowcandidate_change", args=[policy.shadow_version_id])
        summary = selectors.shadow_summary(version_id=policy.shadow_version_id)
        return format_html('<a href="{}">{}</a>', url, summary.sentence())

    def save_model(self, request, obj: RoutingPolicy, form, change) -> None:
        services.routing_policy_save(policy=obj, actor=request.user)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as refusal:
            refusal_show(request, refusal)
            return HttpResponseRedirect(request.get_full_path())
