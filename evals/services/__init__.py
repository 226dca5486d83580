"""Writes of the evals domain: test sets, runs, results, comparisons.

Each module states the rules it keeps: a test set file is stored whole or
not at all and identified by its hash (``testsets``); a run's state moves
only under its locked row, results are recorded once per unit, the database
says what is left, and no network call happens inside a transaction
(``runs``); comparisons need the same contents (``comparisons``).

The package holds one module per entity (``testsets``, ``runs``,
``comparisons``) over ``common`` (the errors they raise); reads live in
``evals.selectors``. This module re-exports their public names (and
``_missing_units``, which tests use), so callers keep writing
``services.eval_run_start(...)``.
"""

from evals.services.common import TestSetFileRefused, UnitRetryLater
from evals.services.comparisons import comparison_create, comparison_for_versions
from evals.services.runs import (
    _missing_units,
    eval_result_record,
    eval_run_cancel,
    eval_run_resume,
    eval_run_sessions_tidy,
    eval_run_start,
    eval_runs_sweep,
    eval_unit_execute,
    eval_units_dispatch,
)
from evals.services.testsets import MAX_ERRORS_IN_MESSAGE, TestSetImport, testset_gating_set, testset_import

__all__ = [
    "MAX_ERRORS_IN_MESSAGE",
    "TestSetFileRefused",
    "TestSetImport",
    "UnitRetryLater",
    "_missing_units",
    "comparison_create",
    "comparison_for_versions",
    "eval_result_record",
    "eval_run_cancel",
    "eval_run_resume",
    "eval_run_sessions_tidy",
    "eval_run_start",
    "eval_runs_sweep",
    "eval_unit_execute",
    "eval_units_dispatch",
    "testset_gating_set",
    "testset_import",
]
