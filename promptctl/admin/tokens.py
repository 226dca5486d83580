"""Personal tokens: everyone sees and creates their own (the secret shown once); admins also a bot's.

Thin: creating and revoking call ``token_create`` / ``token_revoke``, which
hold the rules (nobody creates a token for another person; owner or admin
revokes) and write the audit events.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse

from promptctl import services
from promptctl.admin.mixins import ReadOnlyHistoryAdmin, refusal_show, refusal_text
from promptctl.errors import DomainError
from promptctl.models import PersonalToken


def _is_admin(request: HttpRequest) -> bool:
    return request.user.has_perm("auth.change_user")


class PersonalTokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="what it is for, e.g. laptop or ci")
    owner = forms.ModelChoiceField(
        queryset=get_user_model().objects.none(),
        required=False,
        empty_label="me",
        help_text="admins: a service account (bot) instead of yourself",
    )
    expires_in_days = forms.IntegerField(
        min_value=1, required=False, initial=90, help_text="empty: never expires (revoke it when done)"
    )
    read_only = forms.BooleanField(required=False, help_text="may read, never change anything")

    def __init__(self, *args, request: HttpRequest, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if _is_admin(request):
            self.fields["owner"].queryset = (  # type: ignore[attr-defined]
                get_user_model()
                .objects.filter(groups__name=services.BOTS, is_active=True, is_superuser=False)
                .order_by("username")
            )
        else:
            del self.fields["owner"]


@admin.register(PersonalToken)
class PersonalTokenAdmin(ReadOnlyHistoryAdmin):
    list_display = ("name", "user", "prefix_shown", "read_only", "expires_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), "read_only")
    list_select_related = ("user",)
    search_fields = ("name", "prefix", "user__username")
    fields = (
        "name",
        "user",
        "prefix_shown",
        "read_only",
        "expires_at",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
        "revoked_by",
    )
    readonly_fields = fields
    actions = ("revoke_selected",)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset if _is_admin(request) else queryset.filter(user=request.user)

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None) -> bool:
        if not self.has_module_permission(request):
            return False
        return obj is None or obj.user_id == request.user.pk or _is_admin(request)

    def has_add_permission(self, request) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a token changes only by being revoked (the action)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a revoked token stays on record

    @admin.display(description="prefix")
    def prefix_shown(self, token: PersonalToken) -> str:
        return f"{token.prefix}…"

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = PersonalTokenCreateForm(request.POST if request.method == "POST" else None, request=request)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                issued = services.token_create(
                    user=data.get("owner") or request.user,
                    actor=request.user,
                    name=data["name"],
                    expires_in_days=data["expires_in_days"],
                    read_only=data["read_only"],
                )
            except DomainError as refusal:
                form.add_error(None, refusal_text(refusal))
            else:
                context = {
                    **self.admin_site.each_context(request),
                    "opts": self.model._meta,
                    "title": f"Token {issued.token.name} created for {issued.token.user.username}",
                    "token": issued.token,
                    "secret": issued.secret,
                }
                return TemplateResponse(request, "admin/promptctl/personaltoken/created.html", context)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Create a personal token",
            "form": form,
        }
        return TemplateResponse(request, "admin/promptctl/personaltoken/add_form.html", context)

    @admin.action(description="Revoke selected tokens (their next use is refused)")
    def revoke_selected(self, request: HttpRequest, queryset) -> None:
        revoked = []
        for token in queryset:
            try:
                services.token_revoke(token=token, actor=request.user)
            except DomainError as refusal:
                refusal_show(request, refusal)
            else:
                revoked.append(token.name)
        if revoked:
            messages.success(request, f"Revoked {', '.join(revoked)}; their next use will be refused.")
