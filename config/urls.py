from django.contrib import admin
from django.urls import path

from promptctl.views import healthz
from triage.api import api as triage_api

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", triage_api.urls),
]
