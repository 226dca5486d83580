"""Deployment bindings: which Managed Agents deployments follow which pin, and what promptctl last saw of them.

Binding and unbinding go through ``services.deployment_bind`` / ``deployment_unbind``
(permission-checked, audited); the readings change only through the services
(an apply, a check, a restore). The list's actions read the server now or put
the pin back on the selected deployments.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.utils.html import format_html

from promptctl import services
from promptctl.admin.mixins import ReadOnlyHistoryAdmin, ServiceLoggedAdmin, refusal_show
from promptctl.errors import DomainError
from promptctl.models import PRODUCTION, Agent, DeploymentBinding


class BindForm(forms.ModelForm):
    """The three things a binding names; the service reads the deployment and refuses what does not fit."""

    bind_agent = forms.ModelChoiceField(queryset=Agent.objects.order_by("name"), label="Agent")
    bind_channel = forms.SlugField(initial=PRODUCTION, label="Channel", help_text="the pin the deployment follows")
    bind_deployment_id = forms.CharField(
        max_length=200, label="Deployment id", help_text="the deployment's id on Managed Agents (depl_...)"
    )

    class Meta:
        model = DeploymentBinding
        fields: tuple[str, ...] = ()


@admin.register(DeploymentBinding)
class DeploymentBindingAdmin(ServiceLoggedAdmin, ReadOnlyHistoryAdmin):
    list_display = (
        "deployment_id",
        "name",
        "agent",
        "channel",
        "state_flag",
        "set_version",
        "seen_version",
        "seen_status",
        "problem",
        "seen_at",
    )
    list_filter = ("state", "channel")
    search_fields = ("deployment_id", "name", "agent__name")
    list_select_related = ("agent",)
    readonly_fields = (
        "deployment_id",
        "name",
        "agent",
        "channel",
        "state",
        "problem",
        "set_version",
        "seen_version",
        "seen_status",
        "seen_at",
        "bound_by",
        "bound_at",
    )
    actions = ("check_now", "restore_to_pin")

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = BindForm
            kwargs["fields"] = ("bind_agent", "bind_channel", "bind_deployment_id")
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("bind_agent", "bind_channel", "bind_deployment_id")
        return self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else ()

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # readings change only through the services

    @admin.display(description="state", ordering="state")
    def state_flag(self, binding: DeploymentBinding) -> str:
        if binding.state == DeploymentBinding.State.IN_STEP:
            return binding.get_state_display()
        return format_html('<strong class="promptctl-warning">⚠ {}</strong>', binding.get_state_display())

    def save_model(self, request, obj, form, change: bool) -> None:
        binding = services.deployment_bind(
            agent=form.cleaned_data["bind_agent"],
            channel=form.cleaned_data["bind_channel"],
            deployment_id=form.cleaned_data["bind_deployment_id"],
            actor=request.user,
        )
        obj.pk = binding.pk
        obj.deployment_id = binding.deployment_id
        obj.agent = binding.agent
        obj.channel = binding.channel

    def add_view(self, request, form_url="", extra_context=None):
        try:
            return super().add_view(request, form_url, extra_context)
        except DomainError as refusal:
            refusal_show(request, refusal)
            return HttpResponseRedirect(request.path)

    def delete_model(self, request, obj: DeploymentBinding) -> None:
        services.deployment_unbind(binding=obj, actor=request.user)

    def delete_queryset(self, request, queryset) -> None:
        for binding in queryset:
            services.deployment_unbind(binding=binding, actor=request.user)

    @admin.action(description="Check the selected deployments on the server now")
    def check_now(self, request, queryset) -> None:
        agents = Agent.objects.filter(pk__in=queryset.values("agent_id")).order_by("name")
        for agent in agents:
            try:
                findings = services.deployments_check(agent=agent, actor=request.user)
            except DomainError as refusal:
                refusal_show(request, refusal)
                continue
            if not findings:
                messages.success(request, f"Every deployment bound to {agent.name} runs the version promptctl set.")
            for finding in findings:
                messages.warning(
                    request, f"{finding.name or finding.deployment_id}: {finding.state} — {finding.problem}."
                )

    @admin.action(description="Restore the selected deployments' channels to their pin")
    def restore_to_pin(self, request, queryset) -> None:
        pairs = sorted({(binding.agent, binding.channel) for binding in queryset.select_related("agent")}, key=str)
        for agent, channel in pairs:
            try:
                outcome = services.deployments_restore(agent=agent, channel=channel, actor=request.user)
            except DomainError as refusal:
                refusal_show(request, refusal)
                continue
            if outcome is not None:
                messages.success(
                    request, f"{agent.name}/{channel} deployments on v{outcome.version}: {outcome.words()}."
                )
