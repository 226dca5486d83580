"""The audit log: read-only, newest first, with a button that verifies the hash chain."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from promptctl import selectors
from promptctl.admin import display
from promptctl.admin.mixins import ReadOnlyAdminMixin
from promptctl.admin.paging import EstimatedCountPaginator, IndexedValuesListFilter
from promptctl.audit.segments import segment_problem
from promptctl.models import AuditEvent, AuditSegment


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    # Chosen to fit a 1366 px screen: the object's type and id in one column, long text cut (full on hover).
    list_display = ("sequence", "occurred_at", "who", "verb", "object_shown", "what", "request")
    list_filter = (("verb", IndexedValuesListFilter), ("object_type", IndexedValuesListFilter))
    search_fields = ("actor_username", "object_repr", "request_id", "verb")
    ordering = ("-sequence",)
    fields = (
        "sequence",
        "occurred_at",
        "actor",
        "actor_username",
        "verb",
        "object_type",
        "object_id",
        "object_repr",
        "agent_id_ref",
        "before",
        "after",
        "request_id",
        "previous_hash",
        "hash",
    )
    readonly_fields = fields
    list_select_related = ("actor",)
    change_list_template = "admin/promptctl/auditevent/change_list.html"
    # The log only grows: no full count per page (promptctl.admin.paging).
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    @admin.display(description="actor", ordering="actor_username")
    def who(self, event: AuditEvent) -> str:
        return event.actor_username or "(server)"

    @admin.display(description="object", ordering="object_type")
    def object_shown(self, event: AuditEvent) -> str:
        return f"{event.object_type.split('.')[-1]} #{event.object_id}" if event.object_id else event.object_type or "—"

    @admin.display(description="object as recorded")
    def what(self, event: AuditEvent) -> str:
        return display.truncated(event.object_repr, 48)

    @admin.display(description="request id", ordering="request_id")
    def request(self, event: AuditEvent) -> str:
        return display.truncated(event.request_id, 12)

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


@admin.register(AuditSegment)
class AuditSegmentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Sealed and archived stretches of the audit log: what was exported, where, and whether its seal holds.

    Sealing and archiving are operator acts on the server (docs/OPERATIONS.md, "Archiving the audit
    log"); this page shows their record. Each row's seal is checked against the audit key ring on
    every view (segments are few), so a row edited in the database shows as broken here too.
    """

    list_display = ("number", "events", "sealed_at", "archived", "export_file", "seal")
    list_display_links = ("number",)
    ordering = ("-number",)
    fields = (
        "number",
        "first_sequence",
        "last_sequence",
        "last_mac",
        "previous_seal_mac",
        "export_path",
        "file_mac",
        "export_verified",
        "key_id",
        "row_mac",
        "sealed_at",
        "archived_at",
        "archived_events",
    )
    readonly_fields = fields

    @admin.display(description="events")
    def events(self, segment: AuditSegment) -> str:
        return f"#{segment.first_sequence:,} to #{segment.last_sequence:,}"

    @admin.display(description="archived")
    def archived(self, segment: AuditSegment) -> str:
        if segment.archived_at is None:
            return "no: its events are still in the database"
        return f"{display.when(segment.archived_at)}: {segment.archived_events:,} events removed"

    @admin.display(description="export file")
    def export_file(self, segment: AuditSegment) -> str:
        name = segment.export_path.rsplit("/", 1)[-1]
        return f"{name} ({'checked' if segment.export_verified else 'not checked'})"

    @admin.display(description="seal")
    def seal(self, segment: AuditSegment) -> str:
        problem = segment_problem(segment)
        if problem:
            return format_html('<strong class="promptctl-warning">⚠ {}</strong>', problem)
        return "intact"
