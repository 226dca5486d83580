"""Eval runs (start, live progress, cancel, resume, compare), their results and comparisons."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from evals import charts, selectors, services
from evals.admin.common import admin_context as _context
from evals.models import Comparison, EvalResult, EvalRun, TestSet
from promptctl.admin import ReadOnlyAdminMixin, ReadOnlyHistoryAdmin, display
from promptctl.admin.mixins import refusal_show, refusal_text
from promptctl.errors import DomainError
from promptctl.models import AgentVersion

# --- runs ----------------------------------------------------------------------------------


class EvalRunStartForm(forms.Form):
    agent_version = forms.ModelChoiceField(
        queryset=AgentVersion.objects.select_related("agent").order_by("agent__name", "-number"), label="Agent version"
    )
    testset = forms.ModelChoiceField(
        queryset=TestSet.objects.order_by("name"), label="Test set", help_text="its latest contents are used"
    )
    repeats = forms.IntegerField(
        min_value=1, max_value=EvalRun.MAX_REPEATS, initial=1, help_text="answers per ticket; >1 measures flakiness"
    )


class RunChangeList(ChangeList):
    """The runs list reads a bounded amount per row, whatever the number of runs and results.

    It counts results for the page's runs only (one grouped, indexed query), and loads only the columns
    it shows: never a run's ``scores`` JSON (every ticket of a finished run; the accuracy column reads
    the two figures copied from it) nor the versions' prompts and configs.
    """

    def get_queryset(self, request, exclude_parameters=None):
        return (
            super()
            .get_queryset(request, exclude_parameters)
            .only(
                "repeats",
                "unit_total",
                "status",
                "overall_correct",
                "overall_total",
                "created_at",
                "agent_version__number",
                "agent_version__agent__name",
                "testset_version__number",
                "testset_version__testset__name",
                "started_by__username",
            )
        )

    def get_results(self, request) -> None:
        super().get_results(request)
        runs = list(self.result_list)
        done = dict(
            EvalResult.objects.filter(run_id__in=[run.pk for run in runs])
            .order_by()
            .values_list("run_id")
            .annotate(count=Count("id"))
            .values_list("run_id", "count")
        )
        for run in runs:
            run.done = done.get(run.pk, 0)
        self.result_list = runs


@admin.register(EvalRun)
class EvalRunAdmin(ReadOnlyHistoryAdmin):
    list_display = (
        "run_link",
        "agent",
        "version",
        "testset",
        "repeats",
        "status",
        "progress",
        "accuracy",
        "started_by",
        "created_at",
    )
    list_display_links = None
    list_filter = ("status", "agent_version__agent")
    list_select_related = ("agent_version__agent", "testset_version__testset", "started_by")
    ordering = ("-created_at", "-id")

    def get_changelist(self, request, **kwargs):
        return RunChangeList

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
        if run.overall_total is None:  # not finished, or failed before any score
            return "—"
        share = display.percent(run.overall_correct / run.overall_total) if run.overall_total else "—"
        return f"{run.overall_correct}/{run.overall_total} ({share})"

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
        form = EvalRunStartForm(
            request.POST or None, initial={"agent_version": request.GET.get("agent_version"), "repeats": 1}
        )
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
                form.add_error(None, refusal_text(refusal))
            else:
                messages.success(request, f"Started run #{run.pk}: {run.unit_total} unit(s) queued for the workers.")
                return HttpResponseRedirect(reverse("admin:evals_evalrun_change", args=[run.pk]))
        return TemplateResponse(
            request, "admin/evals/evalrun_start.html", _context(self, request, title="Start an eval run", form=form)
        )

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
            self,
            request,
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
            liveness=selectors.eval_run_liveness(run=run),
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
            refusal_show(request, refusal)
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
    list_display = (
        "run",
        "case",
        "attempt",
        "kind",
        "predicted_team",
        "predicted_priority",
        "latency",
        "session",
    )
    list_filter = ("kind",)
    list_select_related = ("run", "case")
    show_full_result_count = False
    search_fields = ("case__external_id", "session_id")
    readonly_fields = [
        "latency" if field.name == "latency_seconds" else field.name for field in EvalResult._meta.fields
    ]

    @admin.display(description="latency", ordering="latency_seconds")
    def latency(self, result: EvalResult) -> str:
        return "—" if result.latency_seconds is None else f"{display.decimal(result.latency_seconds, digits=2)} s"

    @admin.display(description="session", ordering="session_id")
    def session(self, result: EvalResult) -> str:
        return display.truncated(result.session_id, 18)


# --- comparisons ----------------------------------------------------------------------------


@admin.register(Comparison)
class ComparisonAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("comparison_link", "agent", "versions", "verdict", "p_value", "created_by", "created_at")
    list_display_links = None
    list_filter = ("regressed", "agent")
    list_select_related = ("agent", "baseline_run__agent_version", "candidate_run__agent_version", "created_by")

    @admin.display(description="comparison", ordering="id")
    def comparison_link(self, comparison: Comparison) -> str:
        return format_html(
            '<a href="{}">#{}</a>', reverse("admin:evals_comparison_change", args=[comparison.pk]), comparison.pk
        )

    @admin.display(description="baseline → candidate")
    def versions(self, comparison: Comparison) -> str:
        return f"v{comparison.baseline_run.agent_version.number} → v{comparison.candidate_run.agent_version.number}"

    @admin.display(description="verdict", ordering="regressed")
    def verdict(self, comparison: Comparison) -> str:
        if comparison.regressed:
            return format_html(
                '<strong class="evals-regressed">regressed: {}</strong>',
                ", ".join(comparison.result["regressed_teams"]),
            )
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
            self,
            request,
            title=f"Comparison #{comparison.pk}: v{summary['baseline']['version']} → v{summary['candidate']['version']}",
            original=comparison,
            comparison=comparison,
            summary=summary,
            chart=charts.comparison_chart(comparison.result),
            teams=list(summary["teams"].items()),
        )
        return TemplateResponse(request, "admin/evals/comparison_detail.html", context)
