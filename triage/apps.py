from django.apps import AppConfig


class TriageConfig(AppConfig):
    name = "triage"
    verbose_name = "Triage"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Plug into change control: the default agent's change requests, shadow records in evidence, timeline, CLI."""
        from promptctl import registry
        from triage import record_checks, selectors
        from triage.services.routing import DefaultAgentApplier

        registry.change_applier_register("route", DefaultAgentApplier())
        registry.evidence_extender_register(selectors.promotion_evidence_with_shadow)
        registry.timeline_provider_register(selectors.timeline_canary_checks)
        registry.timeline_provider_register(selectors.timeline_shadow)
        registry.cli_group_register("triage.cli")
        registry.record_check_register(record_checks.default_agent_matches_record)
