from django.apps import AppConfig


class EvalsConfig(AppConfig):
    name = "evals"
    verbose_name = "Evals"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Eval runs and comparisons appear on each agent's timeline.
        from evals import timeline  # noqa: F401
