"""Test sets: upload, versions and their cases (read-only)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from evals import services
from evals.admin.common import admin_context as _context
from evals.models import TestCase, TestSet, TestSetVersion
from promptctl.admin import ReadOnlyAdminMixin, ReadOnlyHistoryAdmin, display
from promptctl.admin.mixins import refusal_text
from promptctl.errors import DomainError
from promptctl.models import Agent

# --- test sets ---------------------------------------------------------------------------


class TestSetUploadForm(forms.Form):
    __test__ = False

    name = forms.SlugField(max_length=100, help_text="a new name creates the set; an existing one gets a new version")
    file = forms.FileField(help_text="JSONL or CSV with id, subject, body, team, priority and optional tags")
    agent = forms.ModelChoiceField(
        queryset=Agent.objects.order_by("name"),
        required=False,
        help_text="labels are checked against this agent's latest prompt; the set belongs to it",
    )
    gating = forms.BooleanField(required=False, help_text="production promotions of the agent are judged on this set")


class TestSetVersionInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = TestSetVersion
    fields = ("version_link", "content_hash", "case_count", "warning_count", "source_name", "created_by", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-number",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("created_by", "testset")

    @admin.display(description="version")
    def version_link(self, version: TestSetVersion) -> str:
        return format_html(
            '<a href="{}">v{}</a>', reverse("admin:evals_testsetversion_change", args=[version.pk]), version.number
        )

    @admin.display(description="label warnings")
    def warning_count(self, version: TestSetVersion) -> int:
        return len(version.label_warnings)


@admin.register(TestSet)
class TestSetAdmin(ReadOnlyHistoryAdmin):
    list_display = ("name", "agent", "gating", "latest_version", "cases", "label_warnings")
    list_select_related = ("agent",)
    search_fields = ("name",)
    fields = ("name", "agent", "gating", "description", "created_by", "created_at")
    readonly_fields = fields
    inlines = (TestSetVersionInline,)

    def get_queryset(self, request):
        latest = TestSetVersion.objects.order_by("testset_id", "-number").only(
            "id", "testset_id", "number", "case_count", "content_hash", "label_warnings"
        )
        return (
            super()
            .get_queryset(request)
            .prefetch_related(Prefetch("versions", queryset=latest, to_attr="ordered_versions"))
        )

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # contents change only by importing a new version

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @staticmethod
    def _latest(testset: TestSet) -> TestSetVersion | None:
        versions = getattr(testset, "ordered_versions", None)
        return versions[0] if versions else None

    @admin.display(description="latest")
    def latest_version(self, testset: TestSet) -> str:
        latest = self._latest(testset)
        return f"v{latest.number} ({latest.content_hash[:12]})" if latest else "—"

    @admin.display(description="tickets")
    def cases(self, testset: TestSet) -> int:
        latest = self._latest(testset)
        return latest.case_count if latest else 0

    @admin.display(description="label warnings")
    def label_warnings(self, testset: TestSet) -> int:
        latest = self._latest(testset)
        return len(latest.label_warnings) if latest else 0

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = TestSetUploadForm(request.POST or None, request.FILES or None)
        report = None
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                imported = services.testset_import(
                    name=form.cleaned_data["name"],
                    data=upload.read(),
                    filename=upload.name,
                    agent=form.cleaned_data["agent"],
                    gating=form.cleaned_data["gating"],
                    actor=request.user,
                )
            except services.TestSetFileRefused as refusal:
                report = refusal.report
                form.add_error(None, f"Refused {upload.name}: {len(report.errors)} bad line(s); nothing was imported.")
            except DomainError as refusal:
                form.add_error(None, refusal_text(refusal))
            else:
                version = imported.version
                verb = "Imported" if imported.created else "These contents already were"
                messages.success(
                    request, f"{verb} {version.testset.name} v{version.number} ({version.case_count} tickets)."
                )
                for warning in version.label_warnings:
                    messages.warning(request, warning["message"])
                return HttpResponseRedirect(reverse("admin:evals_testsetversion_change", args=[version.pk]))
        context = _context(self, request, title="Upload a test set", form=form, report=report)
        return TemplateResponse(request, "admin/evals/testset_upload.html", context)


CASES_SHOWN = 50  # cases on a version's page; the rest are one link away, on a paginated list


@admin.register(TestCase)
class TestCaseAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every case of a version, 100 to a page (reached from the version's page, filtered to that version)."""

    list_display = ("position", "external_id", "team", "priority", "subject_short", "tags")
    list_display_links = ("external_id",)
    list_select_related = ("version__testset",)
    list_per_page = 100
    show_full_result_count = False
    search_fields = ("=external_id",)
    ordering = ("version_id", "position")
    fields = ("version", "position", "external_id", "team", "priority", "tags", "subject", "body")
    readonly_fields = fields

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("evals.view_testset") or super().has_view_permission(request, obj)

    def has_module_permission(self, request) -> bool:
        return False  # reached from a version's page, not listed on its own

    def lookup_allowed(self, lookup, value, request=None) -> bool:
        return lookup in ("version__id__exact", "version") or super().lookup_allowed(lookup, value, request)

    @admin.display(description="subject")
    def subject_short(self, case: TestCase) -> str:
        return display.truncated(case.subject, 60)


@admin.register(TestSetVersion)
class TestSetVersionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("__str__", "testset", "number", "case_count", "created_at")
    list_select_related = ("testset",)
    fields = (
        "testset",
        "number",
        "content_hash",
        "case_count",
        "source_name",
        "source_format",
        "allowed_labels",
        "warnings",
        "created_by",
        "created_at",
        "cases",
    )
    readonly_fields = fields

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("evals.view_testset") or super().has_view_permission(request, obj)

    @admin.display(description="label warnings")
    def warnings(self, version: TestSetVersion) -> str:
        if not version.label_warnings:
            return "—"
        return format_html(
            "<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((w["message"],) for w in version.label_warnings))
        )

    @admin.display(description="tickets")
    def cases(self, version: TestSetVersion) -> str:
        """The first ``CASES_SHOWN`` cases and a link to all of them: the page stays small at any set size."""
        shown = list(
            TestCase.objects.filter(version=version)
            .order_by("position")
            .only("position", "external_id", "team", "priority", "subject", "tags")[:CASES_SHOWN]
        )
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    case.position,
                    case.external_id,
                    case.team,
                    case.priority,
                    display.truncated(case.subject, 60),
                    ", ".join(map(str, case.tags)) or "—",
                )
                for case in shown
            ),
        )
        link = reverse("admin:evals_testcase_changelist") + f"?version__id__exact={version.pk}"
        return format_html(
            '<p class="testset-cases-note">Showing the first {} of {} tickets. <a href="{}">All {} tickets</a> '
            "(paginated).</p><table><thead><tr><th>#</th><th>id</th><th>team</th><th>priority</th><th>subject</th>"
            "<th>tags</th></tr></thead><tbody>{}</tbody></table>",
            len(shown),
            version.case_count,
            link,
            version.case_count,
            rows,
        )
