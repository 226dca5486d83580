"""Read-only bases for admin pages over the record; the apps above reuse them for their own records."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponseNotAllowed
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from simple_history.admin import SimpleHistoryAdmin

from promptctl.errors import DomainError


def refusal_text(refusal: DomainError, *, prefix: str = "") -> SafeString:
    """A refusal in the web's words (house style 9): buttons and pages, never CLI flags; safe HTML.

    Every admin page that shows a refusal, as a message or a form error, words it
    here: ``refusal.web_message()`` (the services' ``Fix.web``), escaped, with the
    fix's link appended when it has one.
    """
    text = format_html("{}{}", prefix, refusal.web_message())
    link = refusal.fix.link if refusal.fix else None
    if link is None:
        return text
    name, args = link
    try:
        url = reverse(name, args=args)
    except NoReverseMatch:
        return text
    return format_html('{} <a href="{}">Open it</a>', text, url)


def refusal_show(request: HttpRequest, refusal: DomainError, *, prefix: str = "Refused: ") -> None:
    """Show ``refusal`` as the page's error message, in the web's words (``refusal_text``)."""
    messages.error(request, refusal_text(refusal, prefix=prefix))


class ServiceLoggedAdmin:
    """For an admin whose form saves go through an audited service: no second "Recent actions" entry.

    The service's ``audit_record`` writes the person's ``LogEntry`` (``promptctl.audit.admin_log``), with
    the audit verb, whichever door was used; Django's own ``log_addition``/``log_change`` after the form
    save would list the same act twice. A save that changes nothing writes no event, and no entry.
    """

    def log_addition(self, request, obj, message):
        return None

    def log_change(self, request, obj, message):
        return None


class ReadOnlyHistoryAdmin(SimpleHistoryAdmin):
    """History pages show who changed what; they never revert (the button is hidden and the POST refused)."""

    def revert_disabled(self, request, obj=None) -> bool:
        return True

    def history_view(self, request, object_id, extra_context=None):
        """Who changed what links to the user's page only for those who may open it (no link, no bare 403)."""
        if not request.user.has_perm("auth.view_user"):
            extra_context = {**(extra_context or {}), "admin_user_view": "promptctl-no-user-page"}
        return super().history_view(request, object_id, extra_context)

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
