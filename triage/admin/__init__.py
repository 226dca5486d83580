"""Admin pages of the triage API: keys, routing policy, the request log, shadow candidates, canary checks, jobs.

- Nothing here writes a model directly: forms and actions call services and
  show a refusal in the web's words (``promptctl.admin.mixins.refusal_text``).
- The request log, shadow results, canary checks and jobs are read-only. A
  reviewer corrects a logged verdict through the inline correction (saved by
  ``triage_correct``) and turns requests picked by filter (agent, outcome,
  corrected, date; "Select all N" takes every match) into a new test set
  version, labels checked against that set's.
- Every role reads these pages (triage migration 0008); only admins see API keys.
- A key's secret is shown once, on the page after it is created.
- List pages select related rows in the same query, so their query count does
  not grow with the number of rows.

One module per part of the record (``keys``, ``routing``, ``request_log``,
``shadow``, ``canary``, ``jobs``); importing them registers their ModelAdmins.
"""

# Importing the modules registers their ModelAdmins with the site.
from triage.admin import canary, jobs, keys, request_log, routing, shadow  # noqa: F401
