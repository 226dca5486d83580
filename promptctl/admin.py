"""The admin: thin pages over the services, read-only wherever the record must not change.

- Nothing here writes a model directly: buttons and forms call services and
  show a refusal's message as is.
- Versions, pins, approvals and audit events are read-only; change requests are
  read-only too (they change only through their buttons); agents' approval
  policy is edited through ``agent_policy_update`` so it is audited.
- History views are read-only: the revert button is hidden and its POST refused.
- List pages use joins, annotations and one prefetch, so their query count does
  not grow with the number of rows.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Prefetch, Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from simple_history.admin import SimpleHistoryAdmin

from promptctl import selectors, services
from promptctl.errors import DomainError
from promptctl.models import PRODUCTION, Agent, AgentVersion, Approval, AuditEvent, ChangeRequest, Pin

admin.site.site_header = "promptctl — change control"
admin.site.site_title = "promptctl"
admin.site.index_title = "Agents, versions, pins and their review record"


class ReadOnlyHistoryAdmin(SimpleHistoryAdmin):
    """History pages show who changed what; they never revert (the button is hidden and the POST refused)."""

    def revert_disabled(self, request, obj=None) -> bool:
        return True

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"], "History is read-only: promptctl never reverts a record.")
        return super().history_form_view(request, object_id, version_id, extra_context)


class ReadOnlyAdminMixin:
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def _pin_text(pin: Pin | None) -> str:
    if pin is None:
        return "—"
    return f"v{pin.version.number}"


def _canary_text(pin: Pin | None) -> str:
    if pin is None or not pin.canary_version_id:
        return "—"
    return f"v{pin.canary_version.number} at {pin.canary_percent}%"


# --- agents --------------------------------------------------------------------------


class VersionInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = AgentVersion
    fields = ("version_link", "origin_flag", "model", "created_by", "created_at", "config_short")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False
    ordering = ("-number",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("created_by", "agent")

    @admin.display(description="version")
    def version_link(self, version: AgentVersion) -> str:
        url = reverse("admin:promptctl_agentversion_change", args=[version.pk])
        return format_html('<a href="{}">v{}</a>', url, version.number)

    @admin.display(description="origin")
    def origin_flag(self, version: AgentVersion) -> str:
        if version.is_outside:
            return mark_safe('<strong class="promptctl-warning">⚠ changed outside promptctl</strong>')
        return "made through promptctl"

    @admin.display(description="config sha256")
    def config_short(self, version: AgentVersion) -> str:
        return version.config_sha256[:12]


class PinInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Pin
    fields = ("channel", "version", "canary_version", "canary_percent", "revision", "change", "updated_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("version__agent", "canary_version__agent", "change__agent", "change__target_version")


@admin.register(Agent)
class AgentAdmin(ReadOnlyHistoryAdmin):
    list_display = (
        "name", "model", "production_pin", "production_canary", "other_pins", "version_count", "drift",
        "required_approvals", "approver_group",
    )
    search_fields = ("name", "remote_id")
    inlines = (PinInline, VersionInline)
    readonly_fields = ("name", "remote_id", "environment_id", "model", "latest_version_number", "created_by", "created_at")
    fieldsets = (
        (None, {"fields": ("name", "remote_id", "environment_id", "model", "latest_version_number", "created_by", "created_at")}),
        ("Approval policy", {"fields": ("required_approvals", "approver_group", "regression_tolerance")}),
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
                versions_total=Count("versions", distinct=True),
                versions_outside=Count("versions", filter=Q(versions__origin=AgentVersion.Origin.OUTSIDE), distinct=True),
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
    def version_count(self, agent: Agent) -> int:
        return agent.versions_total

    @admin.display(description="drift")
    def drift(self, agent: Agent) -> str:
        if agent.versions_outside:
            return format_html('<strong class="promptctl-warning">⚠ {} changed outside promptctl</strong>', agent.versions_outside)
        return "—"

    def get_urls(self):
        urls = [
            path("<path:object_id>/timeline/", self.admin_site.admin_view(self.timeline_view), name="promptctl_agent_timeline"),
            path("<path:object_id>/sync/", self.admin_site.admin_view(self.sync_view), name="promptctl_agent_sync"),
        ]
        return urls + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        agent = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if agent is not None:
            context["drift_versions"] = selectors.agent_drift(agent=agent)
        return super().change_view(request, object_id, form_url, context)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as refusal:
            messages.error(request, str(refusal))
            return HttpResponseRedirect(request.path)

    def save_model(self, request, obj: Agent, form, change: bool) -> None:
        services.agent_policy_update(
            agent=obj,
            actor=request.user,
            required_approvals=form.cleaned_data["required_approvals"],
            approver_group=form.cleaned_data["approver_group"],
            regression_tolerance=form.cleaned_data["regression_tolerance"],
        )

    def _agent_or_404(self, request, object_id) -> Agent:
        agent = self.get_object(request, object_id)
        if agent is None:
            raise Http404("No such agent.")
        if not self.has_view_permission(request, agent):
            raise PermissionDenied
        return agent

    def timeline_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        agent = self._agent_or_404(request, object_id)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": agent,
            "agent": agent,
            "title": f"Timeline of {agent.name}",
            "entries": selectors.agent_timeline(agent=agent),
            "pins": selectors.pins_for_agent(agent=agent),
        }
        return TemplateResponse(request, "admin/promptctl/agent/timeline.html", context)

    def sync_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        agent = self._agent_or_404(request, object_id)
        change_url = reverse("admin:promptctl_agent_change", args=[agent.pk])
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm("promptctl.add_agentversion"):
            messages.error(request, f"{request.user.username} may not sync agents: that needs the promptctl.add_agentversion permission.")
            return HttpResponseRedirect(change_url)
        try:
            result = services.agent_sync(agent=agent, actor=request.user)
        except DomainError as refusal:
            messages.error(request, str(refusal))
            return HttpResponseRedirect(change_url)
        if result.new_versions:
            numbers = ", ".join(f"v{v.number}" for v in result.new_versions)
            messages.warning(request, f"Found versions changed outside promptctl: {numbers}. They reach a pin only through a change request.")
        else:
            messages.success(request, f"{agent.name} is in sync with the server.")
        return HttpResponseRedirect(change_url)


# --- versions ----------------------------------------------------------------------------


@admin.register(AgentVersion)
class AgentVersionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("__str__", "agent", "number", "origin_flag", "model", "created_by", "created_at", "config_short")
    list_filter = ("origin", "agent")
    list_select_related = ("agent", "created_by")
    search_fields = ("agent__name",)
    fields = ("agent", "number", "origin", "model", "created_by", "created_at", "server_created_at", "config_sha256", "system_prompt", "config")
    readonly_fields = fields
    change_form_template = "admin/promptctl/agentversion/change_form.html"

    @admin.display(description="origin")
    def origin_flag(self, version: AgentVersion) -> str:
        if version.is_outside:
            return mark_safe('<strong class="promptctl-warning">⚠ changed outside promptctl</strong>')
        return "promptctl"

    @admin.display(description="config sha256")
    def config_short(self, version: AgentVersion) -> str:
        return version.config_sha256[:12]

    def get_urls(self):
        urls = [path("<path:object_id>/diff/", self.admin_site.admin_view(self.diff_view), name="promptctl_agentversion_diff")]
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
            messages.error(request, str(refusal))
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


# --- change requests ------------------------------------------------------------------------


class ApprovalInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Approval
    fk_name = "change"
    fields = ("reviewer", "decision", "comment", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("reviewer")


class ChangeRequestForm(forms.Form):
    """What a requester fills in; the service decides whether it may be filed."""

    agent = forms.ModelChoiceField(queryset=Agent.objects.order_by("name"))
    kind = forms.ChoiceField(choices=ChangeRequest.Kind.choices, initial=ChangeRequest.Kind.PROMOTE)
    channel = forms.SlugField(initial=PRODUCTION, max_length=50)
    target_version = forms.IntegerField(label="Target version number")
    canary_percent = forms.IntegerField(required=False, min_value=1, max_value=99, label="Canary percent", help_text="canary only")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))
    evidence = forms.CharField(required=False, max_length=500, label="Evidence", help_text="e.g. comparison:12 or run:7")
    accept_regression_reason = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), label="Accept a flagged regression because",
        help_text="needs one more approval than the agent's policy",
    )


class DecisionForm(forms.Form):
    comment = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))


ACTIONS: dict[str, dict[str, Any]] = {
    "approve": {"label": "Approve", "comment": "optional"},
    "reject": {"label": "Reject", "comment": "required"},
    "apply": {"label": "Apply", "comment": None},
    "withdraw": {"label": "Withdraw", "comment": None},
}


@admin.register(ChangeRequest)
class ChangeRequestAdmin(ReadOnlyHistoryAdmin):
    list_display = (
        "id", "agent", "channel", "kind", "from_version", "to_version", "approvals_text", "status", "requested_by", "requested_at",
    )
    list_display_links = ("id",)
    list_filter = ("status", "agent", "kind", "channel")
    list_select_related = ("agent", "base_version", "target_version", "requested_by")
    search_fields = ("reason", "agent__name")
    inlines = (ApprovalInline,)
    fields = (
        "agent", "channel", "kind", "base_version", "base_pin_revision", "target_version", "target_origin", "target_config_sha256",
        "canary_percent", "evidence_type", "evidence_id", "evidence_summary", "accept_regression_reason", "approvals_required",
        "reason", "requested_by", "requested_at", "status", "status_reason", "approved_at", "closed_at", "closed_by",
    )
    readonly_fields = fields
    change_form_template = "admin/promptctl/changerequest/change_form.html"

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("agent", "base_version", "target_version", "requested_by", "closed_by")
            .annotate(approval_count=Count("approvals", filter=Q(approvals__decision=Approval.Decision.APPROVE)))
        )

    def has_add_permission(self, request) -> bool:
        return request.user.has_perm("promptctl.add_changerequest")

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # requests change only through Approve/Reject/Apply/Withdraw

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="from")
    def from_version(self, change: ChangeRequest) -> str:
        return f"v{change.base_version.number}" if change.base_version_id else "—"

    @admin.display(description="to")
    def to_version(self, change: ChangeRequest) -> str:
        if change.target_version.is_outside:
            return format_html('v{} <strong class="promptctl-warning">⚠ outside</strong>', change.target_version.number)
        return f"v{change.target_version.number}"

    @admin.display(description="approvals")
    def approvals_text(self, change: ChangeRequest) -> str:
        return f"{change.approval_count}/{change.approvals_required}"

    @admin.display(description="target origin")
    def target_origin(self, change: ChangeRequest) -> str:
        if change.target_version.is_outside:
            return mark_safe('<strong class="promptctl-warning">⚠ changed outside promptctl (found by sync)</strong>')
        return "made through promptctl"

    @admin.display(description="evidence")
    def evidence_summary(self, change: ChangeRequest) -> str:
        if not change.evidence:
            return "—"
        return change.evidence.get("summary") or change.evidence.get("reference") or str(change.evidence)

    def get_urls(self):
        urls = [
            path(
                "<path:object_id>/action/<slug:action>/",
                self.admin_site.admin_view(self.action_view),
                name="promptctl_changerequest_action",
            ),
        ]
        return urls + super().get_urls()

    def _actions_for(self, change: ChangeRequest) -> list[dict[str, str]]:
        names: list[str] = []
        if change.status == ChangeRequest.Status.PENDING:
            names = ["approve", "reject", "withdraw"]
        elif change.status == ChangeRequest.Status.APPROVED:
            names = ["apply", "reject", "withdraw"]
        return [
            {"name": name, "label": ACTIONS[name]["label"], "url": reverse("admin:promptctl_changerequest_action", args=[change.pk, name])}
            for name in names
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        change = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if change is not None:
            context["change_actions"] = self._actions_for(change)
            context["pin"] = Pin.objects.select_related("version", "canary_version").filter(agent=change.agent, channel=change.channel).first()
            if change.base_version_id:
                context["diff_url"] = (
                    reverse("admin:promptctl_agentversion_diff", args=[change.target_version_id]) + f"?against={change.base_version.number}"
                )
        return super().change_view(request, object_id, form_url, context)

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ChangeRequestForm(request.POST if request.method == "POST" else None, initial={"agent": request.GET.get("agent")})
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                change = services.change_request_create(
                    agent=data["agent"],
                    kind=data["kind"],
                    target_number=data["target_version"],
                    channel=data["channel"],
                    canary_percent=data["canary_percent"],
                    reason=data["reason"],
                    evidence_ref=data["evidence"],
                    accept_regression_reason=data["accept_regression_reason"],
                    actor=request.user,
                )
            except DomainError as refusal:
                form.add_error(None, str(refusal))
            else:
                messages.success(request, f"Filed change request #{change.pk}; it needs {change.approvals_required} approval(s).")
                return HttpResponseRedirect(reverse("admin:promptctl_changerequest_change", args=[change.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "File a change request",
            "form": form,
        }
        return TemplateResponse(request, "admin/promptctl/changerequest/add_form.html", context)

    def action_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        if action not in ACTIONS:
            raise Http404("No such object.")
        change = self.get_object(request, object_id)
        if change is None:
            raise Http404("No such object.")
        if not self.has_view_permission(request, change):
            raise PermissionDenied
        change_url = reverse("admin:promptctl_changerequest_change", args=[change.pk])
        form = DecisionForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            comment = form.cleaned_data["comment"]
            try:
                message = self._perform(action, change=change, user=request.user, comment=comment)
            except DomainError as refusal:
                messages.error(request, f"Refused: {refusal}")
            else:
                messages.success(request, message)
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": change,
            "change": change,
            "action": action,
            "action_label": ACTIONS[action]["label"],
            "comment_mode": ACTIONS[action]["comment"],
            "form": form,
            "title": f"{ACTIONS[action]['label']} change request #{change.pk}?",
            "pin": Pin.objects.select_related("version", "canary_version").filter(agent=change.agent, channel=change.channel).first(),
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/promptctl/changerequest/confirm_action.html", context)

    @staticmethod
    def _perform(action: str, *, change: ChangeRequest, user: Any, comment: str) -> str:
        if action == "approve":
            services.change_request_approve(change=change, reviewer=user, comment=comment)
            change.refresh_from_db()
            return f"Approved change request #{change.pk}; it is now {change.status}."
        if action == "reject":
            services.change_request_reject(change=change, reviewer=user, comment=comment)
            return f"Rejected change request #{change.pk}."
        if action == "apply":
            pin = services.change_request_apply(change=change, actor=user)
            canary = f" with a canary of v{pin.canary_version.number} at {pin.canary_percent}%" if pin.canary_version_id else ""
            return f"Applied change request #{change.pk}: the {pin.channel} pin of {pin.agent.name} is now v{pin.version.number}{canary}."
        services.change_request_withdraw(change=change, actor=user)
        return f"Withdrew change request #{change.pk}."


# --- audit -----------------------------------------------------------------------------------


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("sequence", "occurred_at", "actor_username", "verb", "object_type", "object_id", "object_repr", "request_id")
    list_filter = ("verb", "object_type")
    search_fields = ("actor_username", "object_repr", "request_id", "verb")
    ordering = ("-sequence",)
    fields = (
        "sequence", "occurred_at", "actor", "actor_username", "verb", "object_type", "object_id", "object_repr", "agent_id_ref",
        "before", "after", "request_id", "previous_hash", "hash",
    )
    readonly_fields = fields
    list_select_related = ("actor",)
    change_list_template = "admin/promptctl/auditevent/change_list.html"

    def get_urls(self):
        urls = [path("verify/", self.admin_site.admin_view(self.verify_view), name="promptctl_auditevent_verify")]
        return urls + super().get_urls()

    def verify_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        result = selectors.audit_chain_verify()
        if result.ok:
            messages.success(request, result.message)
        else:
            messages.error(request, result.message)
        return HttpResponseRedirect(reverse("admin:promptctl_auditevent_changelist"))
