from django.apps import AppConfig


class PromptctlConfig(AppConfig):
    name = "promptctl"
    verbose_name = "Change control"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Fill change control's own slots of the registry (the apps above fill theirs in their ``ready()``)."""
        from promptctl import record_checks, registry, selectors, services, signals

        signals.connect()

        for group_name, permissions in services.ROLE_PERMISSIONS.items():
            registry.role_permissions_register(group_name, permissions)
        for provider in (selectors.timeline_versions, selectors.timeline_changes, selectors.timeline_approvals):
            registry.timeline_provider_register(provider)
        for module_name in ("users", "agents", "versions", "changes", "deployments", "audit", "database"):
            registry.cli_group_register(f"promptctl.cli.{module_name}")
        for check in (
            record_checks.pins_match_record,
            record_checks.agent_policies_match_record,
            record_checks.approvers_match_record,
            record_checks.change_requests_match_record,
            record_checks.approvals_match_record,
            record_checks.credentials_match_record,
        ):
            registry.record_check_register(check)
