"""The ASGI application: Django (async views for the triage API) with static files beside it."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "promptctl.settings")

django_application = get_asgi_application()

from promptctl.serving import static_files_wrap  # noqa: E402 - after Django is set up

application = static_files_wrap(django_application)
