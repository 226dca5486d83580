"""The request log: read-only rows, a reviewer's inline correction, and selected requests turned into a test set."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.functional import cached_property
from django.utils.html import format_html_join

from evals.models import TestSet
from promptctl.admin import display
from promptctl.admin.mixins import ServiceLoggedAdmin, refusal_show
from promptctl.errors import DomainError
from triage import services
from triage.models import Outcome, TriageCorrection, TriageRequest

SHOWN_ON_CONFIRM = 50  # rows listed on the confirmation page; the count says how many there are in all
COUNT_LIMIT = 10_000  # the list counts matches up to this many (pages past it: narrow the filters)
SQLITE_SEARCH_ROWS = 5_000  # SQLite has no trigram index: its search reads only this many newest rows


class BoundedPaginator(Paginator):
    """The request log's paginator: a count that costs the same at any size.

    Unfiltered on PostgreSQL it is the planner's row estimate (``pg_class.reltuples``);
    otherwise matches are counted only up to ``COUNT_LIMIT`` (a ``COUNT`` over a
    ``LIMIT``), so a filter or search matching millions of rows stops counting early.
    """

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if connection.vendor == "postgresql" and not queryset.query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [TriageRequest._meta.db_table]
                )
                row = cursor.fetchone()
            if row and row[0] > COUNT_LIMIT:
                return int(row[0])
        return queryset.order_by()[:COUNT_LIMIT].count()


def request_log_search(queryset, term: str):
    """Requests whose subject contains ``term``, or whose request key or session id is ``term``.

    Never a scan of the whole log: on PostgreSQL ``icontains`` on the subject
    (``UPPER(subject) LIKE``) is served by the ``pg_trgm`` GIN index of
    migration 0009 and the keys by their b-tree indexes; SQLite has no such
    index, so there the search reads only the newest ``SQLITE_SEARCH_ROWS``
    rows (the page says so).
    """
    matches = Q(subject__icontains=term) | Q(request_key=term) | Q(session_id=term)
    if connection.vendor != "postgresql":
        floor = (
            TriageRequest.objects.order_by("-received_at", "-id")
            .values_list("received_at", flat=True)[SQLITE_SEARCH_ROWS - 1 : SQLITE_SEARCH_ROWS]
            .first()
        )
        if floor is not None:
            queryset = queryset.filter(received_at__gte=floor)
    return queryset.filter(matches)


# --- the request log -------------------------------------------------------------------------------


class CorrectionForm(forms.ModelForm):
    class Meta:
        model = TriageCorrection
        fields = ("team", "priority", "note")

    def clean(self):
        data = super().clean()
        request = self.instance.request if self.instance.request_id else getattr(self, "parent_request", None)
        if request is not None:
            allowed, source = services.correction_allowed_labels(request=request)
            labels = {field: data[field] for field in ("team", "priority") if data.get(field)}
            for field, problem in services.label_problems(labels=labels, allowed=allowed, source=source).items():
                self.add_error(field, problem)
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

    def get_extra(self, request, obj=None, **kwargs) -> int:
        # A one-to-one inline always allows one form (Django forces max_num=1), so the blank
        # correction form is offered only to those who may record one.
        return self.extra if self.has_add_permission(request, obj) else 0

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
        return Outcome.choices

    def queryset(self, request, queryset):
        value = self.value()
        if value == "corrected":  # an older link's value; "corrected" is its own filter now
            return queryset.filter(correction__isnull=False)
        if value:
            return queryset.filter(outcome=value)
        return queryset


class CorrectedFilter(admin.SimpleListFilter):
    title = "corrected by a reviewer"
    parameter_name = "corrected"

    def lookups(self, request, model_admin):
        return (("yes", "corrected"), ("no", "not corrected"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(correction__isnull=False)
        if self.value() == "no":
            return queryset.filter(correction__isnull=True)
        return queryset


class AddToTestSetForm(forms.Form):
    testset = forms.ModelChoiceField(queryset=None, label="test set")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["testset"].queryset = TestSet.objects.select_related("agent").order_by("name")


@admin.register(TriageRequest)
class TriageRequestAdmin(ServiceLoggedAdmin, admin.ModelAdmin):
    list_display = (
        "id",
        "received",
        "agent",
        "served_by",
        "subject_short",
        "verdict",
        "corrected",
        "latency_ms",
        "api_key",
    )
    list_filter = ("agent", OutcomeFilter, CorrectedFilter, "received_at", "canary", "source")
    list_select_related = ("agent", "version", "api_key", "correction")
    search_fields = ("subject", "request_key", "session_id")
    search_help_text = "subject contains the words, or the exact request key or session id"
    # No date_hierarchy: its MIN/MAX over the matches scanned the log; the "received" filter has fixed ranges.
    show_full_result_count = False
    paginator = BoundedPaginator
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

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return request_log_search(queryset, term), False

    def changelist_view(self, request, extra_context=None):
        if request.GET.get("q", "").strip() and connection.vendor != "postgresql":
            messages.info(
                request,
                f"Search looks only at the newest {SQLITE_SEARCH_ROWS:,} requests on this SQLite database "
                "(PostgreSQL searches them all through a trigram index); filter by date or agent to reach older ones.",
            )
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # The log row itself never changes (every field is read-only); "change" here means adding a correction.
        return request.user.has_perm("triage.add_triagecorrection")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="received", ordering="received_at")
    def received(self, row: TriageRequest) -> str:
        return display.when(row.received_at)

    @admin.display(description="subject")
    def subject_short(self, row: TriageRequest) -> str:
        return display.truncated(row.subject, 40)

    def has_add_to_testset_permission(self, request) -> bool:
        """Reviewers curate labels and requesters import sets; both may add logged tickets to a set."""
        return request.user.has_perm("triage.add_triagecorrection") or request.user.has_perm("evals.add_testset")

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

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_correct": request.user.has_perm("triage.add_triagecorrection")}
        return super().change_view(request, object_id, form_url, extra_context)

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
                refusal_show(request, refusal)
            else:
                messages.success(request, f"Recorded the corrected verdict {data['team']} / {data['priority']}.")

    @admin.action(
        description="Add selected requests to a test set (makes a new version of the set)",
        permissions=["add_to_testset"],
    )
    def add_to_testset(self, request: HttpRequest, queryset) -> HttpResponse | None:
        """Selected rows, or with "Select all N" every row the filters match (the form carries the choice through)."""
        form = AddToTestSetForm(request.POST if "apply" in request.POST else None)
        select_across = request.POST.get("select_across") == "1"
        if "apply" in request.POST and form.is_valid():
            testset = form.cleaned_data["testset"]
            try:
                imported = services.triage_requests_to_testset(
                    requests=list(queryset.select_related(None).only("pk")), testset=testset, actor=request.user
                )
            except DomainError as refusal:
                refusal_show(request, refusal)
            else:
                messages.success(
                    request,
                    f"Test set {imported.testset.name} is now at version {imported.version.number} "
                    f"({imported.version.case_count} tickets).",
                )
            return None
        count = queryset.count()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Add {count} request(s) to a test set",
            "count": count,
            "form": form,
            "select_across": select_across,
            "shown_limit": SHOWN_ON_CONFIRM,
            "selected": queryset.select_related("correction", "version")[:SHOWN_ON_CONFIRM],
            # With "select all N", Django still wants one checked row; the queryset then is every match.
            "selected_ids": list(queryset.values_list("pk", flat=True)[: 1 if select_across else None]),
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/triage/triagerequest/add_to_testset.html", context)
