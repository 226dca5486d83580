"""Agents and their pins: drift warnings, the timeline, sync, and the approval policy (edited through its service)."""

from __future__ import annotations

import datetime as dt

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.utils.http import urlencode

from promptctl import selectors, services
from promptctl.admin.mixins import ReadOnlyAdminMixin, ReadOnlyHistoryAdmin, ServiceLoggedAdmin, refusal_show
from promptctl.admin.paging import bounded_count, count_text
from promptctl.errors import DomainError
from promptctl.models import PRODUCTION, Agent, AgentVersion, Pin


def _pin_text(pin: Pin | None) -> str:
    if pin is None:
        return "—"
    return f"v{pin.version.number}"


def _canary_text(pin: Pin | None) -> str:
    if pin is None or not pin.canary_version_id:
        return "—"
    return f"v{pin.canary_version.number} at {pin.canary_percent}%"


RECENT_VERSIONS = 20  # the agent page shows this many; the version list pages the rest


# --- agents --------------------------------------------------------------------------


class PinInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Pin
    fields = ("channel", "version", "canary_version", "canary_percent", "revision", "change", "updated_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("version__agent", "canary_version__agent", "change__agent", "change__target_version")
        )


@admin.register(Agent)
class AgentAdmin(ServiceLoggedAdmin, ReadOnlyHistoryAdmin):
    list_display = (
        "name",
        "model",
        "production_pin",
        "production_canary",
        "other_pins",
        "version_count",
        "drift",
        "required_approvals",
        "approver_group",
    )
    search_fields = ("name", "remote_id")
    inlines = (PinInline,)  # versions: the recent slice in change_view, the rest paged in the version list
    readonly_fields = (
        "name",
        "remote_id",
        "environment_id",
        "model",
        "latest_version_number",
        "created_by",
        "created_at",
    )
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "name",
                    "remote_id",
                    "environment_id",
                    "model",
                    "latest_version_number",
                    "created_by",
                    "created_at",
                )
            },
        ),
        (
            "Approval policy",
            {
                "fields": (
                    "required_approvals",
                    "approver_group",
                    "regression_tolerance",
                    "canary_evidence_above_percent",
                )
            },
        ),
    )
    change_form_template = "admin/promptctl/agent/change_form.html"

    def get_queryset(self, request):
        pins = Pin.objects.select_related("version", "canary_version").order_by("channel")
        return (
            super()
            .get_queryset(request)
            .select_related("created_by")
            .prefetch_related(Prefetch("pins", queryset=pins))
            .annotate(
                versions_total=bounded_count(AgentVersion, fk="agent", outer_model=Agent),
                versions_outside=bounded_count(
                    AgentVersion, fk="agent", outer_model=Agent, equals={"origin": AgentVersion.Origin.OUTSIDE}
                ),
            )
        )

    def has_add_permission(self, request) -> bool:
        return False  # agents are created with `promptctl agent create` (it creates the remote agent too)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @staticmethod
    def _pins(agent: Agent) -> dict[str, Pin]:
        return {pin.channel: pin for pin in agent.pins.all()}

    @admin.display(description="production")
    def production_pin(self, agent: Agent) -> str:
        return _pin_text(self._pins(agent).get(PRODUCTION))

    @admin.display(description="canary")
    def production_canary(self, agent: Agent) -> str:
        return _canary_text(self._pins(agent).get(PRODUCTION))

    @admin.display(description="other pins")
    def other_pins(self, agent: Agent) -> str:
        others = [f"{channel}: {_pin_text(pin)}" for channel, pin in self._pins(agent).items() if channel != PRODUCTION]
        return ", ".join(others) or "—"

    @admin.display(description="versions")
    def version_count(self, agent: Agent) -> str:
        return count_text(agent.versions_total)

    @admin.display(description="drift")
    def drift(self, agent: Agent) -> str:
        if agent.versions_outside:
            return format_html(
                '<strong class="promptctl-warning">⚠ {} changed outside promptctl</strong>',
                count_text(agent.versions_outside),
            )
        return "—"

    def get_urls(self):
        urls = [
            path(
                "<path:object_id>/timeline/",
                self.admin_site.admin_view(self.timeline_view),
                name="promptctl_agent_timeline",
            ),
            path("<path:object_id>/sync/", self.admin_site.admin_view(self.sync_view), name="promptctl_agent_sync"),
            path(
                "<path:object_id>/deployments/restore/",
                self.admin_site.admin_view(self.deployments_restore_view),
                name="promptctl_agent_deployments_restore",
            ),
        ]
        return urls + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        agent = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if agent is not None:
            context["drift_versions"] = selectors.agent_drift(agent=agent, limit=RECENT_VERSIONS)
            context["drift_total"] = agent.versions_outside
            context["drift_total_text"] = count_text(agent.versions_outside)
            context["drift_url"] = (
                reverse("admin:promptctl_agentversion_changelist")
                + f"?agent__id__exact={agent.pk}&origin__exact=outside"
            )
            context["may_sync"] = request.user.has_perm("promptctl.add_agentversion")
            context["may_file"] = request.user.has_perm("promptctl.add_changerequest")
            context["deployment_bindings"] = list(agent.deployment_bindings.order_by("channel", "deployment_id"))
            context["may_restore"] = request.user.has_perm("promptctl.apply_changerequest")
            context["recent_versions"] = selectors.agent_versions_recent(agent=agent, limit=RECENT_VERSIONS)
            context["versions_total"] = count_text(agent.versions_total)
            context["versions_url"] = (
                reverse("admin:promptctl_agentversion_changelist") + f"?agent__id__exact={agent.pk}"
            )
        return super().change_view(request, object_id, form_url, context)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as refusal:
            refusal_show(request, refusal, prefix="")
            return HttpResponseRedirect(request.path)

    def save_model(self, request, obj: Agent, form, change: bool) -> None:
        services.agent_policy_update(
            agent=obj,
            actor=request.user,
            required_approvals=form.cleaned_data["required_approvals"],
            approver_group=form.cleaned_data["approver_group"],
            regression_tolerance=form.cleaned_data["regression_tolerance"],
            canary_evidence_above_percent=form.cleaned_data["canary_evidence_above_percent"],
        )

    def _agent_or_404(self, request, object_id) -> Agent:
        agent = self.get_object(request, object_id)
        if agent is None:
            raise Http404("No such agent.")
        if not self.has_view_permission(request, agent):
            raise PermissionDenied
        return agent

    def timeline_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """One page of the timeline (``?before=`` the cursor an "Older entries" link carries), oldest first on the page."""
        agent = self._agent_or_404(request, object_id)
        before = None
        if request.GET.get("before"):
            try:
                before = parse_datetime(request.GET["before"])
            except ValueError:
                before = None
            if before is not None and timezone.is_naive(before):
                before = timezone.make_aware(before, dt.UTC)
            if before is None:
                messages.error(
                    request, f"{request.GET['before']!r} is not a moment of the timeline; showing its newest entries."
                )
        page = selectors.agent_timeline_page(agent=agent, before=before)
        timeline_url = reverse("admin:promptctl_agent_timeline", args=[agent.pk])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": agent,
            "agent": agent,
            "title": f"Timeline of {agent.name}",
            "entries": page.entries[::-1],
            "older_url": f"{timeline_url}?{urlencode({'before': page.next_before.isoformat()})}"
            if page.next_before
            else "",
            "newest_url": timeline_url if before else "",
            "pins": selectors.pins_for_agent(agent=agent),
        }
        return TemplateResponse(request, "admin/promptctl/agent/timeline.html", context)

    def sync_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        agent = self._agent_or_404(request, object_id)
        change_url = reverse("admin:promptctl_agent_change", args=[agent.pk])
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm("promptctl.add_agentversion"):
            messages.error(
                request,
                f"{request.user.username} may not sync agents: that needs the promptctl.add_agentversion permission.",
            )
            return HttpResponseRedirect(change_url)
        try:
            result = services.agent_sync(agent=agent, actor=request.user)
        except DomainError as refusal:
            refusal_show(request, refusal, prefix="")
            return HttpResponseRedirect(change_url)
        if result.new_versions:
            numbers = ", ".join(f"v{v.number}" for v in result.new_versions)
            messages.warning(
                request,
                f"Found versions changed outside promptctl: {numbers}. They reach a pin only through a change request.",
            )
        if result.reconciled:
            numbers = ", ".join(f"v{v.number}" for v in result.reconciled)
            messages.info(
                request,
                f"Recorded promptctl's own version(s) whose record was still pending: {numbers} "
                "(made through promptctl; nothing outside promptctl changed them).",
            )
        elif not result.new_versions and not result.unstorable:
            messages.success(request, f"{agent.name} is in sync with the server.")
        for number, why in result.unstorable.items():
            messages.warning(
                request, f"Version {number} on the server cannot be recorded ({why}); it cannot be pinned."
            )
        try:
            drift = services.deployments_check(agent=agent, actor=request.user)
        except DomainError as refusal:
            refusal_show(request, refusal, prefix="Bound deployments could not be read: ")
            drift = []
        for finding in drift:
            messages.warning(
                request,
                f"Deployment {finding.name or finding.deployment_id} is {finding.state}: {finding.problem}. "
                "“Restore deployments to the pin” below puts the pin back on it.",
            )
        return HttpResponseRedirect(change_url)

    def deployments_restore_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Put the channel's pin back on its bound deployments (``services.deployments_restore``)."""
        agent = self._agent_or_404(request, object_id)
        change_url = reverse("admin:promptctl_agent_change", args=[agent.pk])
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        channel = request.POST.get("channel") or PRODUCTION
        try:
            outcome = services.deployments_restore(agent=agent, channel=channel, actor=request.user)
        except DomainError as refusal:
            refusal_show(request, refusal)
            return HttpResponseRedirect(change_url)
        if outcome is not None:
            messages.success(
                request,
                f"Deployments of {agent.name}/{channel} are on the pin's v{outcome.version}: {outcome.words()}.",
            )
        return HttpResponseRedirect(change_url)


# --- pins --------------------------------------------------------------------------------


@admin.register(Pin)
class PinAdmin(ReadOnlyAdminMixin, ReadOnlyHistoryAdmin):
    list_display = ("agent", "channel", "pinned", "canary", "revision", "change", "updated_at")
    list_filter = ("channel", "agent")
    list_select_related = ("agent", "version", "canary_version", "change__agent", "change__target_version")
    fields = ("agent", "channel", "version", "canary_version", "canary_percent", "revision", "change", "updated_at")
    readonly_fields = fields

    @admin.display(description="pinned version")
    def pinned(self, pin: Pin) -> str:
        return _pin_text(pin)

    @admin.display(description="canary")
    def canary(self, pin: Pin) -> str:
        return _canary_text(pin)
