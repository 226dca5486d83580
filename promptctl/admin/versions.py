"""Versions: read-only pages with an outside-change flag and a side-by-side diff against another version."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.safestring import mark_safe

from promptctl import selectors
from promptctl.admin.mixins import ReadOnlyAdminMixin, refusal_show
from promptctl.admin.paging import EstimatedCountPaginator
from promptctl.errors import DomainError
from promptctl.models import AgentVersion, VersionIntent


@admin.register(AgentVersion)
class AgentVersionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("__str__", "agent", "number", "origin_flag", "model", "created_by", "created_at", "config_short")
    list_filter = ("origin", "agent")
    list_select_related = ("agent", "created_by")
    search_fields = ("agent__name",)
    paginator = EstimatedCountPaginator  # an agent may have 10⁵ versions: never count them all
    show_full_result_count = False
    fields = (
        "agent",
        "number",
        "origin",
        "model",
        "created_by",
        "created_at",
        "server_created_at",
        "config_sha256",
        "system_prompt",
        "config",
    )
    readonly_fields = fields
    change_form_template = "admin/promptctl/agentversion/change_form.html"

    @admin.display(description="origin")
    def origin_flag(self, version: AgentVersion) -> str:
        if version.is_outside:
            return mark_safe('<strong class="promptctl-warning">⚠ changed outside promptctl</strong>')
        return "promptctl"

    @admin.display(description="config sha256")
    def config_short(self, version: AgentVersion) -> str:
        return version.config_hash[:12]

    def get_urls(self):
        urls = [
            path(
                "<path:object_id>/diff/", self.admin_site.admin_view(self.diff_view), name="promptctl_agentversion_diff"
            )
        ]
        return urls + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        version = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if version is not None:
            context["other_versions"] = list(
                version.agent.versions.exclude(pk=version.pk).order_by("number").values_list("number", flat=True)
            )
        return super().change_view(request, object_id, form_url, context)

    def diff_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        version = self.get_object(request, object_id)
        if version is None:
            raise Http404("No such object.")
        if not self.has_view_permission(request, version):
            raise PermissionDenied
        others = list(version.agent.versions.exclude(pk=version.pk).order_by("number").values_list("number", flat=True))
        against = request.GET.get("against", "")
        try:
            against_number = int(against) if against else (others[-1] if others else version.number)
        except ValueError:
            against_number = version.number
        try:
            diff = selectors.version_diff(agent=version.agent, left_number=against_number, right_number=version.number)
        except DomainError as refusal:
            refusal_show(request, refusal, prefix="")
            return HttpResponseRedirect(reverse("admin:promptctl_agentversion_change", args=[version.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": version,
            "title": f"{version.agent.name}: v{diff.left.number} ↔ v{diff.right.number}",
            "diff": diff,
            "other_versions": others,
            "against": against_number,
        }
        return TemplateResponse(request, "admin/promptctl/agentversion/diff.html", context)


@admin.register(VersionIntent)
class VersionIntentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Version creates promptctl started: open ones are settled by the next sync or create (docs/CHANGE_CONTROL.md)."""

    list_display = ("agent", "base_version", "outcome", "version_number", "created_by", "started_at", "finished_at")
    list_filter = ("outcome", "agent")
    list_select_related = ("agent", "created_by")
    fields = (
        "agent",
        "marker",
        "base_version",
        "outcome",
        "version_number",
        "created_by",
        "started_at",
        "finished_at",
    )
    readonly_fields = fields
