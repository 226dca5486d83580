from django.apps import AppConfig

# What each role may do on the Triage pages (docs/API.md): everyone with a role reads the request log,
# jobs, shadow candidates, routing policies and canary checks; reviewers record corrected verdicts.
# API keys stay with admins. Frozen copy in triage migration 0008.
TRIAGE_READ = tuple(
    f"triage.view_{model}"
    for model in (
        "triagerequest",
        "triagecorrection",
        "triagejob",
        "shadowcandidate",
        "shadowresult",
        "routingpolicy",
        "canarycheck",
        "canarycomparison",
        "canarypolicy",
    )
)
ROLE_PERMISSIONS = {
    "requesters": TRIAGE_READ,
    "reviewers": (*TRIAGE_READ, "triage.add_triagecorrection", "triage.change_triagecorrection"),
}


class TriageConfig(AppConfig):
    name = "triage"
    verbose_name = "Triage"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Plug into change control: the default agent's change requests, shadow records in evidence, timeline, CLI."""
        from promptctl import registry
        from triage import record_checks, selectors, services
        from triage.services.retention import redactions
        from triage.services.routing import DefaultAgentApplier

        registry.change_applier_register("route", DefaultAgentApplier())
        registry.evidence_extender_register(selectors.promotion_evidence_with_shadow)
        registry.timeline_provider_register(selectors.timeline_canary_checks)
        registry.timeline_provider_register(selectors.timeline_shadow)
        registry.cli_group_register("triage.cli")
        registry.cli_group_register("triage.retention_cli")
        registry.record_check_register(record_checks.default_agent_matches_record)
        registry.record_check_register(record_checks.canary_counters_match_the_log)
        # Jobs, shadow runs and canary comparisons a killed worker lost, sent again from every worker's sweep timer (evals.tasks).
        registry.worker_sweep_register(services.triage_jobs_sweep)
        registry.worker_sweep_register(services.shadow_runs_sweep)
        registry.worker_sweep_register(services.canary_comparisons_sweep)
        # Customer text retention empties: the runtime role may update these columns and nothing else.
        for redaction in redactions():
            registry.redaction_register(redaction)
        for group_name, permissions in ROLE_PERMISSIONS.items():
            registry.role_permissions_register(group_name, permissions)
