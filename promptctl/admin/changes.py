"""Change requests: filed through a form and changed only through Approve/Reject/Apply/Withdraw buttons, each a service call."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from promptctl import services
from promptctl.admin.mixins import ReadOnlyAdminMixin, ReadOnlyHistoryAdmin, refusal_show, refusal_text
from promptctl.admin.paging import EstimatedCountPaginator, IndexedValuesListFilter
from promptctl.errors import DomainError
from promptctl.models import PRODUCTION, Agent, AgentVersion, Approval, ChangeRequest, Pin
from promptctl.registry import review_evidence
from promptctl.review import ACTION_LABELS, change_request_review


class ApprovalInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Approval
    fk_name = "change"
    fields = ("reviewer", "decision", "comment", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("reviewer")


class AgentChoiceForm(forms.Form):
    """The first step of filing: which agent (its versions and evidence fill the next step's lists)."""

    agent = forms.ModelChoiceField(queryset=Agent.objects.order_by("name"))


def _version_label(version: AgentVersion, pinned: dict[int, list[str]]) -> str:
    origin = "⚠ changed outside promptctl" if version.is_outside else "made through promptctl"
    channels = pinned.get(version.pk)
    now = f" — now {', '.join(channels)}" if channels else ""
    return f"v{version.number} ({origin}, {version.created_at:%Y-%m-%d %H:%M}){now}"


class ChangeRequestForm(forms.Form):
    """What a requester fills in, picked from lists of the agent's versions and evidence; the service decides."""

    agent = forms.ModelChoiceField(queryset=Agent.objects.order_by("name"), widget=forms.HiddenInput)
    kind = forms.ChoiceField(choices=ChangeRequest.Kind.choices, initial=ChangeRequest.Kind.PROMOTE)
    channel = forms.SlugField(initial=PRODUCTION, max_length=50)
    target_version = forms.TypedChoiceField(
        coerce=int,
        empty_value=None,
        required=False,
        label="Target version",
        help_text="For “make default agent”, leave empty: the agent's production version is used.",
    )
    canary_percent = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=99,
        label="Canary share (%)",
        help_text="Canary requests only: the share of traffic the target gets.",
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))
    evidence = forms.ChoiceField(
        required=False,
        label="Evidence",
        help_text="The agent's comparisons and eval runs, newest first. A production promotion needs a comparison "
        "with production's version (a finished run of the target for the first one).",
    )
    accept_regression_reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Accept a flagged regression because",
        help_text="Only when the chosen comparison flags a regression you mean to ship; it needs one more approval "
        "than the agent's policy.",
    )

    def __init__(self, *args: Any, agent: Agent, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        pinned: dict[int, list[str]] = {}
        for pin in Pin.objects.filter(agent=agent).order_by("channel"):
            pinned.setdefault(pin.version_id, []).append(pin.channel)
            if pin.canary_version_id:
                pinned.setdefault(pin.canary_version_id, []).append(f"{pin.channel} canary")
        versions = agent.versions.order_by("-number")
        target = self.fields["target_version"]
        assert isinstance(target, forms.TypedChoiceField)
        target.choices = [("", "—")] + [(v.number, _version_label(v, pinned)) for v in versions]
        provider = review_evidence()
        evidence = self.fields["evidence"]
        assert isinstance(evidence, forms.ChoiceField)
        evidence.choices = [("", "— none —")] + (provider.choices(agent=agent) if provider is not None else [])


class DecisionForm(forms.Form):
    comment = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))


ACTIONS: dict[str, dict[str, Any]] = {
    "approve": {"label": "Approve", "comment": "optional"},
    "reject": {"label": "Reject", "comment": "required"},
    "apply": {"label": "Apply", "comment": None},
    "withdraw": {"label": "Withdraw", "comment": None},
}


class ApprovalCountChangeList(ChangeList):
    """Counts approvals for the page's rows only (one grouped query), never over every request before the limit."""

    def get_results(self, request) -> None:
        super().get_results(request)
        page = list(self.result_list)
        counts = dict(
            Approval.objects.filter(change_id__in=[change.pk for change in page], decision=Approval.Decision.APPROVE)
            .values("change_id")
            .annotate(approvals=Count("pk"))
            .values_list("change_id", "approvals")
        )
        for change in page:
            change.approval_count = counts.get(change.pk, 0)


@admin.register(ChangeRequest)
class ChangeRequestAdmin(ReadOnlyHistoryAdmin):
    list_display = (
        "id",
        "agent",
        "channel",
        "kind",
        "from_version",
        "to_version",
        "approvals_text",
        "status",
        "requested_by",
        "requested_at",
    )
    list_display_links = ("id",)
    list_filter = ("status", "agent", "kind", ("channel", IndexedValuesListFilter))
    list_select_related = ("agent", "base_version", "target_version", "requested_by")
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    search_fields = ("reason", "agent__name")
    inlines = (ApprovalInline,)
    fields = (
        "agent",
        "channel",
        "kind",
        "base_version",
        "base_pin_revision",
        "target_version",
        "target_origin",
        "target_config_sha256",
        "canary_percent",
        "evidence_type",
        "evidence_id",
        "evidence_summary",
        "gate_inputs_changed",
        "accept_regression_reason",
        "approvals_required",
        "reason",
        "requested_by",
        "requested_at",
        "status",
        "status_reason",
        "approved_at",
        "closed_at",
        "closed_by",
    )
    readonly_fields = fields
    change_form_template = "admin/promptctl/changerequest/change_form.html"

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("agent", "base_version", "target_version", "requested_by", "closed_by")
        )

    def get_changelist(self, request, **kwargs):
        return ApprovalCountChangeList

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

    @admin.display(description="gating set changed")
    def gate_inputs_changed(self, change: ChangeRequest) -> str:
        """What the gate measures changed since production's version was promoted (frozen when filed)."""
        changed = (change.evidence or {}).get("gate_inputs_changed")
        if not changed:
            return "—"
        return format_html('<strong class="promptctl-warning">⚠ {}</strong>', changed["summary"])

    def get_urls(self):
        urls = [
            path(
                "<path:object_id>/action/<slug:action>/",
                self.admin_site.admin_view(self.action_view),
                name="promptctl_changerequest_action",
            ),
        ]
        return urls + super().get_urls()

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        if obj is not None and obj.kind != ChangeRequest.Kind.CANARY:
            fields.remove("canary_percent")  # a promotion has no canary share: "canary percent 0" says nothing
        return fields

    def change_view(self, request, object_id, form_url="", extra_context=None):
        change = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if change is not None:
            review = change_request_review(change=change, user=request.user)
            context["review"] = review
            context["title"] = f"Change request #{change.pk}: {review['moves']}"
            context["change_actions"] = [
                {
                    "name": name,
                    "label": ACTION_LABELS[name],
                    "url": reverse("admin:promptctl_changerequest_action", args=[change.pk, name]),
                }
                for name in review["actions"].allowed
            ]
            context["pin"] = (
                Pin.objects.select_related("version", "canary_version")
                .filter(agent=change.agent, channel=change.channel)
                .first()
            )
            if change.base_version_id:
                context["diff_url"] = (
                    reverse("admin:promptctl_agentversion_diff", args=[change.target_version_id])
                    + f"?against={change.base_version.number}"
                )
        return super().change_view(request, object_id, form_url, context)

    def _filing_agent(self, request: HttpRequest) -> Agent | None:
        """The agent being filed for: from the form, the link that led here, or the only agent there is."""
        raw = request.POST.get("agent") or request.GET.get("agent")
        if raw:
            return Agent.objects.filter(pk=raw).first() if str(raw).isdigit() else None
        agents = list(Agent.objects.order_by("name")[:2])
        return agents[0] if len(agents) == 1 else None

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "File a change request",
        }
        agent = self._filing_agent(request)
        if agent is None:
            context["agent_form"] = AgentChoiceForm(request.GET or None)
            return TemplateResponse(request, "admin/promptctl/changerequest/add_form.html", context)
        fields = ("kind", "channel", "target_version", "canary_percent", "evidence", "accept_regression_reason")
        initial = {"agent": agent.pk, **{name: request.GET[name] for name in fields if request.GET.get(name)}}
        form = ChangeRequestForm(request.POST if request.method == "POST" else None, agent=agent, initial=initial)
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
                form.add_error(None, refusal_text(refusal))
            else:
                messages.success(
                    request,
                    f"Filed change request #{change.pk}; it needs {change.approvals_required} "
                    f"approval{'s' if change.approvals_required != 1 else ''} from {change.agent.approver_group!r}.",
                )
                return HttpResponseRedirect(reverse("admin:promptctl_changerequest_change", args=[change.pk]))
        context.update(form=form, agent=agent)
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
        refusal = None
        if request.method == "POST" and form.is_valid():
            comment = form.cleaned_data["comment"]
            try:
                message = self._perform(action, change=change, user=request.user, comment=comment)
            except DomainError as error:
                if ACTIONS[action]["comment"] is None:
                    refusal_show(request, error)
                    return HttpResponseRedirect(change_url)
                refusal = refusal_text(error, prefix="Refused: ")  # keep the comment typed so far
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
            "refusal": refusal,
            "title": f"{ACTIONS[action]['label']} change request #{change.pk}?",
            "pin": Pin.objects.select_related("version", "canary_version")
            .filter(agent=change.agent, channel=change.channel)
            .first(),
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/promptctl/changerequest/confirm_action.html", context)

    @staticmethod
    def _perform(action: str, *, change: ChangeRequest, user: Any, comment: str) -> str:
        if action == "approve":
            services.change_request_approve(change=change, reviewer=user, comment=comment)
            change.refresh_from_db()
            approvals = change.approvals.filter(decision=Approval.Decision.APPROVE).count()
            counted = f"{approvals} of {change.approvals_required} approvals"
            if change.status == ChangeRequest.Status.APPROVED:
                return f"Approved change request #{change.pk}: {counted}. It can be applied now."
            missing = change.approvals_required - approvals
            return f"Approved change request #{change.pk}: {counted}. It needs {missing} more before it can be applied."
        if action == "reject":
            services.change_request_reject(change=change, reviewer=user, comment=comment)
            return f"Rejected change request #{change.pk}."
        if action == "apply":
            pin = services.change_request_apply(change=change, actor=user)
            if change.kind == ChangeRequest.Kind.ROUTE:
                return f"Applied change request #{change.pk}: {pin.agent.name} is now the default agent."
            canary = (
                f" with a canary of v{pin.canary_version.number} at {pin.canary_percent}%"
                if pin.canary_version_id
                else ""
            )
            return f"Applied change request #{change.pk}: the {pin.channel} pin of {pin.agent.name} is now v{pin.version.number}{canary}."
        services.change_request_withdraw(change=change, actor=user)
        return f"Withdrew change request #{change.pk}."
