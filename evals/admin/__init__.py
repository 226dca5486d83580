"""The evals admin: thin pages over evals services and selectors.

- Test sets are added by uploading a file (the validation report lists every
  bad line when it is refused); versions and cases are read-only.
- Runs are started from a version and a test set; their page shows a live
  progress bar (a small JSON endpoint polled by a few lines of JS), the
  per-team table, the confusion matrix, wrong and flaky tickets, and buttons
  for cancel, resume and compare, each calling one service.
- Results and comparisons are evidence: read-only, never deleted. The
  comparison page draws both versions side by side per team (inline SVG) with
  deltas, intervals, flips and the verdict.
- Pages select what they show with joins and annotations: their query count
  does not grow with the number of rows.
"""

from evals.admin import runs, testsets  # noqa: F401 - importing registers the pages
