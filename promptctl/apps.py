from django.apps import AppConfig


class PromptctlConfig(AppConfig):
    name = "promptctl"
    verbose_name = "Change control"
    default_auto_field = "django.db.models.BigAutoField"
