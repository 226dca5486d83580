from django.apps import AppConfig

# What each role may do with test sets, runs and comparisons (frozen copy in migration 0002).
EVALS_READ = (
    "evals.view_testset",
    "evals.view_testsetversion",
    "evals.view_testcase",
    "evals.view_evalrun",
    "evals.view_evalresult",
    "evals.view_comparison",
)
ROLE_PERMISSIONS = {
    "requesters": (
        *EVALS_READ,
        "evals.add_testset",
        "evals.add_evalrun",
        "evals.change_evalrun",
        "evals.add_comparison",
    ),
    "reviewers": EVALS_READ,
}


class EvalsConfig(AppConfig):
    name = "evals"
    verbose_name = "Evals"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Plug into change control: the promotion gate, timeline entries, role permissions, the CLI group."""
        from evals import gating, record_checks, review, timeline
        from promptctl import registry

        registry.promotion_gate_register(gating.EvalsPromotionGate())
        registry.review_evidence_register(review.EvalsReviewEvidence())
        registry.timeline_provider_register(timeline.eval_timeline)
        for group_name, permissions in ROLE_PERMISSIONS.items():
            registry.role_permissions_register(group_name, permissions)
        registry.cli_group_register("evals.cli")
        registry.record_check_register(record_checks.gating_sets_match_record)
        registry.record_check_register(record_checks.gating_contents_match_hash)
