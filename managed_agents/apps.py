from django.apps import AppConfig


class ManagedAgentsConfig(AppConfig):
    """No models: installed only so ``python manage.py emulator`` is found."""

    name = "managed_agents"
    verbose_name = "Managed Agents"
