"""The ASGI application: Django for the admin, its API handler for /api/, static files beside both."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

django_application = get_asgi_application()

from config.serving import ApiHandler, api_dispatch, static_files_wrap  # noqa: E402 - after Django is set up
from managed_agents.sdk import sdk_preload  # noqa: E402

# The web process serves the triage API: its first call must not wait for the SDK's import.
sdk_preload()

application = static_files_wrap(api_dispatch(django_application, ApiHandler()))
