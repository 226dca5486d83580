"""The ASGI application (config.asgi): the API's own handler and chain, the admin's full one."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.serving import ApiHandler
from tests.asgi_support import asgi_request


def _get(path: str, headers: dict[str, str] | None = None):
    return asgi_request("GET", path, headers=headers)


def test_api_paths_take_the_api_chain_and_the_admin_keeps_its_own(db):
    api = _get("/api/v1/openapi.json", {"X-Request-ID": "trace-7"})
    assert api.status_code == 200
    assert api.headers["X-Content-Type-Options"] == "nosniff"  # ApiSecurityMiddleware
    assert api.headers["X-Request-ID"] == "trace-7"  # RequestIdMiddleware
    assert "X-Frame-Options" not in api.headers and "set-cookie" not in api.headers  # no admin middleware

    admin = _get("/admin/login/")
    assert admin.status_code == 200
    assert admin.headers["X-Frame-Options"] == "DENY"
    assert "csrftoken" in admin.headers.get("set-cookie", "")
    assert admin.headers["X-Request-ID"]


@pytest.mark.parametrize(
    "middleware",
    ["django.middleware.csrf.CsrfViewMiddleware", "django.contrib.auth.middleware.LoginRequiredMiddleware"],
)
def test_the_api_chain_refuses_middleware_with_view_hooks(settings, middleware):
    settings.PROMPTCTL_API_MIDDLEWARE = [middleware, "promptctl.middleware.RequestIdMiddleware"]
    with pytest.raises(ImproperlyConfigured, match="PROMPTCTL_API_MIDDLEWARE"):
        ApiHandler()


def test_a_sync_only_middleware_is_refused_too(settings):
    settings.PROMPTCTL_API_MIDDLEWARE = ["tests.promptctl.test_serving.SyncOnly"]
    with pytest.raises(ImproperlyConfigured, match="async-capable"):
        ApiHandler()


class SyncOnly:
    sync_capable = True
    async_capable = False

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)
