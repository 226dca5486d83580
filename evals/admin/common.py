"""What every evals admin page shares."""

from __future__ import annotations


def admin_context(model_admin, request, **extra):
    return {**model_admin.admin_site.each_context(request), "opts": model_admin.model._meta, **extra}
