"""Admin pages of the triage API: keys, routing policy, the request log, shadow candidates, canary checks, jobs.

- Nothing here writes a model directly: forms and actions call services and
  show a refusal's message as is.
- The request log, shadow results, canary checks and jobs are read-only. A
  reviewer corrects a logged verdict through the inline correction (saved by
  ``triage_correct``) and turns selected requests into a new test set version.
- A key's secret is shown once, on the page after it is created.
- List pages select related rows in the same query, so their query count does
  not grow with the number of rows.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from promptctl.admin import ReadOnlyAdminMixin, ReadOnlyHistoryAdmin
from promptctl.errors import DomainError
from promptctl.models import Agent, AgentVersion
from triage import selectors, services
from triage.models import (
    ERROR_OUTCOMES,
    ApiKey,
    CanaryCheck,
    Outcome,
    RoutingPolicy,
    ShadowCandidate,
    ShadowResult,
    TriageCorrection,
    TriageJob,
    TriageRequest,
)
from managed_agents.verdicts import allowed_labels


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


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
        return str(usage.last_used_at) if usage and usage.last_used_at else "never"

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ApiKeyCreateForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                issued = services.api_key_create(
                    name=data["name"], actor=request.user, agent_names=[a.name for a in data["agents"]],
                    all_agents=data["all_agents"],
                )
            except DomainError as refusal:
                form.add_error(None, str(refusal))
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
                messages.error(request, f"Refused: {refusal}")
            else:
                revoked.append(key.name)
        if revoked:
            messages.success(request, f"Revoked {', '.join(revoked)}; their next requests will be refused.")


# --- routing policy ----------------------------------------------------------------------------


class RoutingPolicyForm(forms.ModelForm):
    class Meta:
        model = RoutingPolicy
        fields = (
            "agent", "is_default", "canary_max_invalid_rate", "canary_max_error_rate", "canary_min_requests",
            "shadow_version", "shadow_percent",
        )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        agent_id = self.instance.agent_id if self.instance and self.instance.pk else None
        versions = AgentVersion.objects.select_related("agent").order_by("agent__name", "number")
        self.fields["shadow_version"].queryset = versions.filter(agent_id=agent_id) if agent_id else versions


@admin.register(RoutingPolicy)
class RoutingPolicyAdmin(ReadOnlyHistoryAdmin):
    form = RoutingPolicyForm
    list_display = ("agent", "is_default", "canary_limits", "shadow", "shadow_record", "updated_at")
    list_select_related = ("agent", "shadow_version")
    readonly_fields = ("shadow_record", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (("agent",) if obj is not None else ())

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

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
            messages.error(request, f"Refused: {refusal}")
            return HttpResponseRedirect(request.get_full_path())


# --- the request log -------------------------------------------------------------------------------


class CorrectionForm(forms.ModelForm):
    class Meta:
        model = TriageCorrection
        fields = ("team", "priority", "note")

    def clean(self):
        data = super().clean()
        request = self.instance.request if self.instance.request_id else getattr(self, "parent_request", None)
        if request is not None:
            allowed = allowed_labels(request.version.system_prompt)
            for field in ("team", "priority"):
                choices = allowed.get(field)
                if choices and data.get(field) and data[field] not in choices:
                    self.add_error(field, f"v{request.version.number}'s prompt allows only {', '.join(choices)}.")
        return data


class CorrectionInline(admin.StackedInline):
    model = TriageCorrection
    form = CorrectionForm
    fields = ("team", "priority", "note", "corrected_by", "corrected_at")
    readonly_fields = ("corrected_by", "corrected_at")
    extra = 1
    max_num = 1
    can_delete = False
    verbose_name = "reviewer's correction"

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        formset.form.parent_request = obj
        return formset

    def has_add_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("triage.add_triagecorrection")

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("triage.add_triagecorrection")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class OutcomeFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return Outcome.choices + [("corrected", "corrected by a reviewer")]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "corrected":
            return queryset.filter(correction__isnull=False)
        if value:
            return queryset.filter(outcome=value)
        return queryset


class AddToTestSetForm(forms.Form):
    testset = forms.ModelChoiceField(queryset=None, label="test set")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        from evals.models import TestSet

        self.fields["testset"].queryset = TestSet.objects.select_related("agent").order_by("name")


@admin.register(TriageRequest)
class TriageRequestAdmin(admin.ModelAdmin):
    list_display = ("id", "received_at", "agent", "served_by", "canary", "verdict", "corrected", "latency_ms", "api_key")
    list_filter = (OutcomeFilter, "canary", "agent", "source")
    list_select_related = ("agent", "version", "api_key", "correction")
    search_fields = ("subject", "request_key", "session_id")
    date_hierarchy = "received_at"
    inlines = (CorrectionInline,)
    actions = ("add_to_testset",)
    fields = (
        "agent", "channel", "served_by", "pin_revision", "canary", "shadow_version", "api_key", "source", "request_key",
        "subject", "body", "outcome", "team", "priority", "problem", "format_warning", "reply", "session_id",
        "latency_ms", "received_at", "recorded_at", "shadow_answers",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("agent", "version", "api_key", "correction", "shadow_version")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # The log row itself never changes (every field is read-only); "change" here means adding a correction.
        return request.user.has_perm("triage.add_triagecorrection")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="version")
    def served_by(self, row: TriageRequest) -> str:
        return f"v{row.version.number}"

    @admin.display(description="verdict")
    def verdict(self, row: TriageRequest) -> str:
        if row.outcome == Outcome.OK:
            return f"{row.team} / {row.priority}"
        return row.get_outcome_display()

    @admin.display(description="corrected to")
    def corrected(self, row: TriageRequest) -> str:
        correction = getattr(row, "correction", None) if hasattr(row, "correction") else None
        return f"{correction.team} / {correction.priority}" if correction else "—"

    @admin.display(description="shadow answers")
    def shadow_answers(self, row: TriageRequest) -> str:
        results = list(row.shadow_results.select_related("version"))
        if not results:
            return "—"
        return format_html_join(
            "\n", "<div>v{}: {} {}</div>",
            ((r.version.number, f"{r.team} / {r.priority}" if r.outcome == Outcome.OK else r.get_outcome_display(),
              "(disagrees)" if r.agrees is False else "") for r in results),
        )

    def save_model(self, request, obj, form, change) -> None:
        pass  # the log row is immutable; only the inline correction is saved

    def save_formset(self, request, form, formset, change) -> None:
        # The admin's change message reads these; the service below does the saving.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for inline_form in formset.forms:
            if not inline_form.has_changed() or not inline_form.is_valid():
                continue
            data = inline_form.cleaned_data
            try:
                services.triage_correct(
                    request=form.instance, team=data["team"], priority=data["priority"], note=data.get("note", ""),
                    actor=request.user,
                )
            except DomainError as refusal:
                messages.error(request, f"Refused: {refusal}")
            else:
                messages.success(request, f"Recorded the corrected verdict {data['team']} / {data['priority']}.")

    @admin.action(description="Add selected requests to a test set (makes a new version of the set)")
    def add_to_testset(self, request: HttpRequest, queryset) -> HttpResponse | None:
        form = AddToTestSetForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            testset = form.cleaned_data["testset"]
            try:
                imported = services.triage_requests_to_testset(requests=list(queryset), testset=testset, actor=request.user)
            except DomainError as refusal:
                messages.error(request, f"Refused: {refusal}")
            else:
                messages.success(
                    request,
                    f"Test set {imported.testset.name} is now at version {imported.version.number} "
                    f"({imported.version.case_count} tickets).",
                )
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Add {queryset.count()} request(s) to a test set",
            "form": form,
            "selected": queryset.select_related("correction", "version")[:200],
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/triage/triagerequest/add_to_testset.html", context)


# --- shadow candidates ---------------------------------------------------------------------------------


@admin.register(ShadowCandidate)
class ShadowCandidateAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Each candidate version with its shadow record: disagreement with production, invalid outputs, errors."""

    list_display = ("__str__", "runs", "disagreement", "invalid", "errors")
    list_select_related = ("agent",)
    fields = ("agent", "number", "runs", "disagreement", "invalid", "errors", "summary_sentence", "recent_disagreements")
    readonly_fields = fields

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .filter(shadow_results__isnull=False)
            .annotate(
                shadow_total=Count("shadow_results"),
                shadow_compared=Count("shadow_results", filter=Q(shadow_results__agrees__isnull=False)),
                shadow_disagreements=Count("shadow_results", filter=Q(shadow_results__agrees=False)),
                shadow_invalid=Count("shadow_results", filter=Q(shadow_results__outcome=Outcome.INVALID)),
                shadow_errors=Count("shadow_results", filter=Q(shadow_results__outcome__in=ERROR_OUTCOMES)),
            )
        )

    @admin.display(description="shadow runs")
    def runs(self, version) -> int:
        return version.shadow_total

    @admin.display(description="disagrees with production")
    def disagreement(self, version) -> str:
        rate = version.shadow_disagreements / version.shadow_compared if version.shadow_compared else None
        return f"{version.shadow_disagreements} of {version.shadow_compared} ({_percent(rate)})"

    @admin.display(description="invalid outputs")
    def invalid(self, version) -> str:
        return f"{version.shadow_invalid} ({_percent(version.shadow_invalid / version.shadow_total)})"

    @admin.display(description="failed sessions")
    def errors(self, version) -> int:
        return version.shadow_errors

    @admin.display(description="summary")
    def summary_sentence(self, version) -> str:
        return selectors.shadow_summary(version_id=version.pk).sentence()

    @admin.display(description="where it disagreed (newest 50)")
    def recent_disagreements(self, version) -> str:
        rows = list(selectors.shadow_disagreements(version_id=version.pk)[:50])
        if not rows:
            return "—"
        body = format_html_join(
            "", '<tr><td><a href="{}">#{}</a></td><td>{}</td><td>{} / {}</td><td>{} / {}</td></tr>',
            (
                (reverse("admin:triage_triagerequest_change", args=[r.request_id]), r.request_id, r.request.subject[:80],
                 r.request.team, r.request.priority, r.team, r.priority)
                for r in rows
            ),
        )
        return format_html(
            "<table><thead><tr><th>request</th><th>subject</th><th>production</th><th>candidate</th></tr></thead>"
            "<tbody>{}</tbody></table>", body,
        )


@admin.register(ShadowResult)
class ShadowResultAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "request", "version", "outcome", "team", "priority", "agrees", "latency_ms", "created_at")
    list_filter = ("agrees", "outcome", "version__agent")
    list_select_related = ("request", "request__version", "version", "version__agent")
    fields = ("request", "version", "outcome", "team", "priority", "agrees", "problem", "reply", "session_id", "latency_ms", "created_at")
    readonly_fields = fields


# --- canary checks and jobs ------------------------------------------------------------------------------


@admin.register(CanaryCheck)
class CanaryCheckAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "agent", "canary_version", "summary_text", "end_change")
    list_select_related = ("agent", "canary_version", "end_change", "end_change__agent", "end_change__target_version")
    fields = (
        "agent", "channel", "canary_change", "pin_revision", "canary_version", "canary_percent", "requests", "invalid",
        "errors", "max_invalid_rate", "max_error_rate", "end_change", "created_at",
    )
    readonly_fields = fields

    @admin.display(description="numbers")
    def summary_text(self, check: CanaryCheck) -> str:
        return check.summary()


@admin.register(TriageJob)
class TriageJobAdmin(ReadOnlyAdminMixin, ReadOnlyHistoryAdmin):
    list_display = ("id", "agent", "api_key", "status", "attempts", "created_at", "finished_at", "error_code")
    list_filter = ("status", "agent")
    list_select_related = ("agent", "api_key")
    fields = (
        "id", "agent", "api_key", "status", "attempts", "request", "error_code", "error_message", "subject", "body",
        "request_key", "created_at", "started_at", "finished_at",
    )
    readonly_fields = fields
