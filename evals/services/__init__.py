"""Writes of the evals domain: test sets, runs, results, comparisons.

Rules every service keeps, and why:

- A test set file is stored whole or not at all (``TestSetFileRefused`` names
  every bad line), and contents are identified by their hash, so a run can
  always say exactly which tickets it used.
- A run's state moves only here, inside ``transaction.atomic()`` with the run
  row locked by ``select_for_update()`` and its starting state checked.
- Recording a result locks the run row first, then inserts (once per unit:
  the unique key makes a redelivered unit a no-op), then counts: whichever
  result lands last sees every other one and finishes the run, exactly once.
- The database, not the broker, says what is left: resume and the sweep
  dispatch every (case, attempt) that has no result. A duplicate message
  finds the result already there and does nothing.
- No network call happens inside a transaction: the session runs between the
  "may I start" check and the transaction that records its result.

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
