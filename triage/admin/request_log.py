"""The request log: read-only rows, a reviewer's inline correction, and selected requests turned into a test set."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html_join

from evals.models import TestSet
from managed_agents.verdicts import allowed_labels
from promptctl.errors import DomainError
from triage import services
from triage.models import Outcome, TriageCorrection, TriageRequest

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
        self.fields["testset"].queryset = TestSet.objects.select_related("agent").order_by("name")


@admin.register(TriageRequest)
class TriageRequestAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "received_at",
        "agent",
        "served_by",
        "canary",
        "verdict",
        "corrected",
        "latency_ms",
        "api_key",
    )
    list_filter = (OutcomeFilter, "canary", "agent", "source")
    list_select_related = ("agent", "version", "api_key", "correction")
    search_fields = ("subject", "request_key", "session_id")
    date_hierarchy = "received_at"
    inlines = (CorrectionInline,)
    actions = ("add_to_testset",)
    fields = (
        "agent",
        "channel",
        "served_by",
        "pin_revision",
        "canary",
        "shadow_version",
        "api_key",
        "source",
        "request_key",
        "subject",
        "body",
        "outcome",
        "team",
        "priority",
        "problem",
        "format_warning",
        "reply",
        "session_id",
        "latency_ms",
        "received_at",
        "recorded_at",
        "shadow_answers",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return (
            super().get_queryset(request).select_related("agent", "version", "api_key", "correction", "shadow_version")
        )

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
            "\n",
            "<div>v{}: {} {}</div>",
            (
                (
                    r.version.number,
                    f"{r.team} / {r.priority}" if r.outcome == Outcome.OK else r.get_outcome_display(),
                    "(disagrees)" if r.agrees is False else "",
                )
                for r in results
            ),
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
                    request=form.instance,
                    team=data["team"],
                    priority=data["priority"],
                    note=data.get("note", ""),
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
                imported = services.triage_requests_to_testset(
                    requests=list(queryset), testset=testset, actor=request.user
                )
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
