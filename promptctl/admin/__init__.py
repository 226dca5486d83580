"""The admin: thin pages over the services, read-only wherever the record must not change.

- Nothing here writes a model directly: buttons and forms call services and
  show a refusal in the web's words (``mixins.refusal_text``: buttons and
  pages, never CLI flags).
- Versions, pins, approvals and audit events are read-only; change requests are
  read-only too (they change only through their buttons); agents' approval
  policy is edited through ``agent_policy_update`` so it is audited.
- History views are read-only: the revert button is hidden and its POST refused.
- List pages use joins, annotations and one prefetch, so their query count does
  not grow with the number of rows.

One module per part of the record (``agents`` with their pins, ``versions``,
``changes``, ``audit``, ``notifications``: webhooks and their deliveries); ``mixins`` holds the read-only bases the apps above
reuse, re-exported here as ``from promptctl.admin import ReadOnlyAdminMixin``.
"""

from django.contrib import admin

# Importing the modules registers their ModelAdmins with the site.
from promptctl.admin import agents, audit, changes, deployments, notifications, tokens, versions  # noqa: F401
from promptctl.admin.mixins import ReadOnlyAdminMixin, ReadOnlyHistoryAdmin

__all__ = ["ReadOnlyAdminMixin", "ReadOnlyHistoryAdmin"]

admin.site.site_header = "promptctl — change control"
admin.site.site_title = "promptctl"
admin.site.index_title = "Agents, versions, pins and their review record"
