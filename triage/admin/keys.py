"""API keys: a key is created on its own page (its secret shown once) and changes only by being revoked."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse

from promptctl.admin import ReadOnlyHistoryAdmin, display
from promptctl.admin.mixins import refusal_show, refusal_text
from promptctl.errors import DomainError
from promptctl.models import Agent
from triage import services
from triage.models import ApiKey

# --- API keys ------------------------------------------------------------------------------


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="who or what uses the key, e.g. helpdesk-prod")
    agents = forms.ModelMultipleChoiceField(queryset=Agent.objects.order_by("name"), required=False)
    all_agents = forms.BooleanField(required=False, help_text="the key may call every agent, including future ones")


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyHistoryAdmin):
    list_display = ("name", "prefix_shown", "scope", "created_by", "created_at", "revoked_at", "last_used")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    list_select_related = ("created_by", "usage")
    search_fields = ("name", "prefix")
    fields = ("name", "prefix_shown", "scope", "created_by", "created_at", "revoked_at", "revoked_by", "last_used")
    readonly_fields = fields
    actions = ("revoke_selected",)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("agents")

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # keys change only by being revoked (the action)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a revoked key stays on record

    @admin.display(description="prefix")
    def prefix_shown(self, key: ApiKey) -> str:
        return f"{key.prefix}…"

    @admin.display(description="agents")
    def scope(self, key: ApiKey) -> str:
        return "all agents" if key.all_agents else ", ".join(sorted(a.name for a in key.agents.all())) or "—"

    @admin.display(description="last used")
    def last_used(self, key: ApiKey) -> str:
        usage = getattr(key, "usage", None)
        return display.when(usage.last_used_at) if usage and usage.last_used_at else "never"

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ApiKeyCreateForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                issued = services.api_key_create(
                    name=data["name"],
                    actor=request.user,
                    agent_names=[a.name for a in data["agents"]],
                    all_agents=data["all_agents"],
                )
            except DomainError as refusal:
                form.add_error(None, refusal_text(refusal))
            else:
                context = {
                    **self.admin_site.each_context(request),
                    "opts": self.model._meta,
                    "title": f"API key {issued.key.name} created",
                    "key": issued.key,
                    "secret": issued.secret,
                }
                return TemplateResponse(request, "admin/triage/apikey/created.html", context)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Create an API key",
            "form": form,
        }
        return TemplateResponse(request, "admin/triage/apikey/add_form.html", context)

    @admin.action(description="Revoke selected keys (their next request is refused)")
    def revoke_selected(self, request: HttpRequest, queryset) -> None:
        revoked = []
        for key in queryset:
            try:
                services.api_key_revoke(key=key, actor=request.user)
            except DomainError as refusal:
                refusal_show(request, refusal)
            else:
                revoked.append(key.name)
        if revoked:
            messages.success(request, f"Revoked {', '.join(revoked)}; their next requests will be refused.")
