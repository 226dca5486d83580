from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from promptctl.views import favicon, healthz
from triage.api import api as triage_api

urlpatterns = [
    # "View site" and the bare host lead to the admin's index (the one site there is), not a 404.
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False), name="home"),
    path("favicon.ico", favicon, name="favicon"),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", triage_api.urls),
]
