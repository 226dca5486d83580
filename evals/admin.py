"""The evals admin: thin pages over evals services and selectors.

- Test sets are added by uploading a file (the validation report lists every
  bad line when it is refused); versions and cases are read-only.
- Runs are started from a version and a test set; their page shows a live
  progress bar (a small JSON endpoint polled by a few lines of JS), the
  per-team table, the confusion matrix, wrong and flaky tickets, and buttons
  for cancel, resume and compare, each calling one service.
- Results and comparisons are evidence: read-only, never deleted. The
  comparison page draws both versions side by side per team (inline SVG) with
  deltas, intervals, flips and the verdict.
- Pages select what they show with joins and annotations: their query count
  does not grow with the number of rows.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Prefetch, Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from evals import charts, selectors, services
from evals.models import Comparison, EvalResult, EvalRun, TestCase, TestSet, TestSetVersion
from promptctl.admin import ReadOnlyAdminMixin, ReadOnlyHistoryAdmin
from promptctl.errors import DomainError
from promptctl.models import Agent, AgentVersion


def _context(model_admin, request, **extra):
    return {**model_admin.admin_site.each_context(request), "opts": model_admin.model._meta, **extra}


# --- test sets ---------------------------------------------------------------------------


class TestSetUploadForm(forms.Form):
    __test__ = False

    name = forms.SlugField(max_length=100, help_text="a new name creates the set; an existing one gets a new version")
    file = forms.FileField(help_text="JSONL or CSV with id, subject, body, team, priority and optional tags")
    agent = forms.ModelChoiceField(
        queryset=Agent.objects.order_by("name"), required=False,
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
        return format_html('<a href="{}">v{}</a>', reverse("admin:evals_testsetversion_change", args=[version.pk]), version.number)

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
        return super().get_queryset(request).prefetch_related(Prefetch("versions", queryset=latest, to_attr="ordered_versions"))

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
                form.add_error(None, str(refusal))
            else:
                version = imported.version
                verb = "Imported" if imported.created else "These contents already were"
                messages.success(request, f"{verb} {version.testset.name} v{version.number} ({version.case_count} tickets).")
                for warning in version.label_warnings:
                    messages.warning(request, warning["message"])
                return HttpResponseRedirect(reverse("admin:evals_testsetversion_change", args=[version.pk]))
        context = _context(self, request, title="Upload a test set", form=form, report=report)
        return TemplateResponse(request, "admin/evals/testset_upload.html", context)


class TestCaseInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = TestCase
    fields = ("position", "external_id", "team", "priority", "subject", "tags")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(TestSetVersion)
class TestSetVersionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("__str__", "testset", "number", "case_count", "created_at")
    list_select_related = ("testset",)
    fields = ("testset", "number", "content_hash", "case_count", "source_name", "source_format", "allowed_labels",
              "warnings", "created_by", "created_at")
    readonly_fields = fields
    inlines = (TestCaseInline,)

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("evals.view_testset") or super().has_view_permission(request, obj)

    @admin.display(description="label warnings")
    def warnings(self, version: TestSetVersion) -> str:
        if not version.label_warnings:
            return "—"
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((w["message"],) for w in version.label_warnings)))


# --- runs ----------------------------------------------------------------------------------


class EvalRunStartForm(forms.Form):
    agent_version = forms.ModelChoiceField(
        queryset=AgentVersion.objects.select_related("agent").order_by("agent__name", "-number"), label="Agent version"
    )
    testset = forms.ModelChoiceField(queryset=TestSet.objects.order_by("name"), label="Test set", help_text="its latest contents are used")
    repeats = forms.IntegerField(min_value=1, max_value=EvalRun.MAX_REPEATS, initial=1, help_text="answers per ticket; >1 measures flakiness")


@admin.register(EvalRun)
class EvalRunAdmin(ReadOnlyHistoryAdmin):
    list_display = ("run_link", "agent", "version", "testset", "repeats", "status", "progress", "accuracy", "started_by", "created_at")
    list_display_links = None
    list_filter = ("status", "agent_version__agent")
    list_select_related = ("agent_version__agent", "testset_version__testset", "started_by")
    ordering = ("-created_at", "-id")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(done=Count("results"))

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # runs change only through their buttons

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="run", ordering="id")
    def run_link(self, run: EvalRun) -> str:
        return format_html('<a href="{}">#{}</a>', reverse("admin:evals_evalrun_change", args=[run.pk]), run.pk)

    @admin.display(description="agent")
    def agent(self, run: EvalRun) -> str:
        return run.agent_version.agent.name

    @admin.display(description="version")
    def version(self, run: EvalRun) -> str:
        return f"v{run.agent_version.number}"

    @admin.display(description="test set")
    def testset(self, run: EvalRun) -> str:
        return f"{run.testset_version.testset.name} v{run.testset_version.number}"

    @admin.display(description="progress")
    def progress(self, run: EvalRun) -> str:
        return charts.progress_bar(done=run.done, total=run.unit_total)

    @admin.display(description="accuracy")
    def accuracy(self, run: EvalRun) -> str:
        if not run.scores:
            return "—"
        overall = run.scores["overall"]
        return f"{overall['correct']}/{overall['total']}"

    def get_urls(self):
        def view(function):
            return self.admin_site.admin_view(function)

        urls = [
            path("<int:run_id>/progress/", view(self.progress_view), name="evals_evalrun_progress"),
            path("<int:run_id>/cancel/", view(self.cancel_view), name="evals_evalrun_cancel"),
            path("<int:run_id>/resume/", view(self.resume_view), name="evals_evalrun_resume"),
            path("<int:run_id>/compare/", view(self.compare_view), name="evals_evalrun_compare"),
        ]
        return urls + super().get_urls()

    def _run_or_404(self, request, run_id: int) -> EvalRun:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            return selectors.eval_run_get(run_id=run_id)
        except DomainError:
            raise Http404("No such run.") from None

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = EvalRunStartForm(request.POST or None, initial={"agent_version": request.GET.get("agent_version"), "repeats": 1})
        if request.method == "POST" and form.is_valid():
            try:
                testset_version = selectors.testset_version_latest(testset=form.cleaned_data["testset"])
                run = services.eval_run_start(
                    agent_version=form.cleaned_data["agent_version"],
                    testset_version=testset_version,
                    repeats=form.cleaned_data["repeats"],
                    actor=request.user,
                )
            except DomainError as refusal:
                form.add_error(None, str(refusal))
            else:
                messages.success(request, f"Started run #{run.pk}: {run.unit_total} unit(s) queued for the workers.")
                return HttpResponseRedirect(reverse("admin:evals_evalrun_change", args=[run.pk]))
        return TemplateResponse(request, "admin/evals/evalrun_start.html", _context(self, request, title="Start an eval run", form=form))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        try:
            run = self._run_or_404(request, int(object_id))
        except ValueError:
            raise Http404("No such run.") from None
        summary = selectors.eval_run_summary(run=run)
        confusion = summary["scores"]["confusion"]
        wrong = [
            {"ticket": ticket, **data}
            for ticket, data in summary["tickets"].items()
            if data["correct"] is False or data["agreement"] is not None and data["agreement"] < 1
        ]
        comparisons = (
            Comparison.objects.filter(Q(baseline_run=run) | Q(candidate_run=run))
            .select_related("baseline_run__agent_version", "candidate_run__agent_version")
            .order_by("-created_at")
        )
        partners = (
            EvalRun.objects.filter(
                status=EvalRun.Status.FINISHED,
                agent_version__agent=run.agent_version.agent,
                testset_version__content_hash=run.testset_version.content_hash,
            )
            .exclude(pk=run.pk)
            .select_related("agent_version")
            .order_by("-finished_at")[:50]
        )
        context = _context(
            self, request,
            title=f"Eval run #{run.pk}",
            original=run,
            run=run,
            summary=summary,
            scores=summary["scores"],
            confusion_rows=[
                (row, [(confusion["counts"][row][column], column == row) for column in confusion["columns"]])
                for row in confusion["rows"]
            ],
            wrong=wrong,
            comparisons=comparisons,
            partners=partners if run.status == EvalRun.Status.FINISHED else [],
            progress_url=reverse("admin:evals_evalrun_progress", args=[run.pk]),
            can_act=request.user.has_perm("evals.change_evalrun"),
            can_compare=request.user.has_perm("evals.add_comparison"),
        )
        return TemplateResponse(request, "admin/evals/evalrun_detail.html", context)

    def progress_view(self, request: HttpRequest, run_id: int) -> HttpResponse:
        run = self._run_or_404(request, run_id)
        return JsonResponse(selectors.eval_run_progress(run=run))

    def _post_action(self, request, run_id: int, permission: str, act) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        run = self._run_or_404(request, run_id)
        if not request.user.has_perm(permission):
            messages.error(request, f"{request.user.username} may not do that: it needs the {permission} permission.")
            return HttpResponseRedirect(reverse("admin:evals_evalrun_change", args=[run.pk]))
        try:
            return act(run)
        except DomainError as refusal:
            messages.error(request, f"Refused: {refusal}")
            return HttpResponseRedirect(reverse("admin:evals_evalrun_change", args=[run.pk]))

    def cancel_view(self, request, run_id: int) -> HttpResponse:
        def act(run):
            services.eval_run_cancel(run=run, actor=request.user)
            messages.success(request, f"Cancelled run #{run.pk}.")
            return HttpResponseRedirect(reverse("admin:evals_evalrun_change", args=[run.pk]))

        return self._post_action(request, run_id, "evals.change_evalrun", act)

    def resume_view(self, request, run_id: int) -> HttpResponse:
        def act(run):
            dispatched = services.eval_run_resume(run=run, actor=request.user)
            messages.success(request, f"Run #{run.pk}: dispatched {dispatched} unit(s) that had no result yet.")
            return HttpResponseRedirect(reverse("admin:evals_evalrun_change", args=[run.pk]))

        return self._post_action(request, run_id, "evals.change_evalrun", act)

    def compare_view(self, request, run_id: int) -> HttpResponse:
        def act(run):
            other = selectors.eval_run_get(run_id=int(request.POST.get("other") or 0))
            baseline, candidate = (other, run) if request.POST.get("role") == "candidate" else (run, other)
            comparison = services.comparison_create(baseline_run=baseline, candidate_run=candidate, actor=request.user)
            return HttpResponseRedirect(reverse("admin:evals_comparison_change", args=[comparison.pk]))

        return self._post_action(request, run_id, "evals.add_comparison", act)


@admin.register(EvalResult)
class EvalResultAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("run", "case", "attempt", "kind", "predicted_team", "predicted_priority", "latency_seconds", "session_id")
    list_filter = ("kind",)
    list_select_related = ("run", "case")
    search_fields = ("case__external_id", "session_id")
    readonly_fields = [field.name for field in EvalResult._meta.fields]


# --- comparisons ----------------------------------------------------------------------------


@admin.register(Comparison)
class ComparisonAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("comparison_link", "agent", "versions", "verdict", "p_value", "created_by", "created_at")
    list_display_links = None
    list_filter = ("regressed", "agent")
    list_select_related = ("agent", "baseline_run__agent_version", "candidate_run__agent_version", "created_by")

    @admin.display(description="comparison", ordering="id")
    def comparison_link(self, comparison: Comparison) -> str:
        return format_html('<a href="{}">#{}</a>', reverse("admin:evals_comparison_change", args=[comparison.pk]), comparison.pk)

    @admin.display(description="baseline → candidate")
    def versions(self, comparison: Comparison) -> str:
        return f"v{comparison.baseline_run.agent_version.number} → v{comparison.candidate_run.agent_version.number}"

    @admin.display(description="verdict", ordering="regressed")
    def verdict(self, comparison: Comparison) -> str:
        if comparison.regressed:
            return format_html('<strong class="evals-regressed">regressed: {}</strong>', ", ".join(comparison.result["regressed_teams"]))
        return "no regression"

    @admin.display(description="McNemar p", ordering="mcnemar_p")
    def p_value(self, comparison: Comparison) -> str:
        return f"{comparison.mcnemar_p:.3g}"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            comparison = selectors.comparison_get(comparison_id=int(object_id))
        except (ValueError, DomainError):
            raise Http404("No such comparison.") from None
        summary = selectors.comparison_summary(comparison=comparison)
        context = _context(
            self, request,
            title=f"Comparison #{comparison.pk}: v{summary['baseline']['version']} → v{summary['candidate']['version']}",
            original=comparison,
            comparison=comparison,
            summary=summary,
            chart=charts.comparison_chart(comparison.result),
            teams=list(summary["teams"].items()),
        )
        return TemplateResponse(request, "admin/evals/comparison_detail.html", context)
