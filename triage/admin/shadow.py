"""Shadow candidates and their results: each candidate's record beside production, read-only."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from promptctl.admin import ReadOnlyAdminMixin
from triage import selectors
from triage.models import ERROR_OUTCOMES, Outcome, ShadowCandidate, ShadowResult


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


# --- shadow candidates ---------------------------------------------------------------------------------


@admin.register(ShadowCandidate)
class ShadowCandidateAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Each candidate version with its shadow record: disagreement with production, invalid outputs, errors."""

    list_display = ("__str__", "runs", "disagreement", "invalid", "errors")
    list_select_related = ("agent",)
    fields = (
        "agent",
        "number",
        "runs",
        "disagreement",
        "invalid",
        "errors",
        "summary_sentence",
        "recent_disagreements",
    )
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
            "",
            '<tr><td><a href="{}">#{}</a></td><td>{}</td><td>{} / {}</td><td>{} / {}</td></tr>',
            (
                (
                    reverse("admin:triage_triagerequest_change", args=[r.request_id]),
                    r.request_id,
                    r.request.subject[:80],
                    r.request.team,
                    r.request.priority,
                    r.team,
                    r.priority,
                )
                for r in rows
            ),
        )
        return format_html(
            "<table><thead><tr><th>request</th><th>subject</th><th>production</th><th>candidate</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            body,
        )


@admin.register(ShadowResult)
class ShadowResultAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "request", "version", "outcome", "team", "priority", "agrees", "latency_ms", "created_at")
    list_filter = ("agrees", "outcome", "version__agent")
    list_select_related = ("request", "request__version", "version", "version__agent")
    fields = (
        "request",
        "version",
        "outcome",
        "team",
        "priority",
        "agrees",
        "problem",
        "reply",
        "session_id",
        "latency_ms",
        "created_at",
    )
    readonly_fields = fields
