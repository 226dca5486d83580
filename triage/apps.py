from django.apps import AppConfig


class TriageConfig(AppConfig):
    name = "triage"
    verbose_name = "Triage"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Plug into change control: shadow records in promotion evidence, timeline entries, the CLI group."""
        from promptctl import registry
        from triage import selectors

        registry.evidence_extender_register(selectors.promotion_evidence_with_shadow)
        registry.timeline_provider_register(selectors.timeline_canary_checks)
        registry.timeline_provider_register(selectors.timeline_shadow)
        registry.cli_group_register("triage.cli")
