"""Admin lists over big tables: counts that stay cheap at a million rows, and per-page annotations.

Django's changelist counts every matching row to number its pages. On a big table that count is
the slowest query of the page, so lists over tables that only grow (the audit log, change
requests, and in evals/triage runs and logged requests) use ``EstimatedCountPaginator``: the
planner's estimate for the whole table on PostgreSQL, and a count capped at ``COUNT_BOUND`` rows
for a filtered list (its last pages are reached by narrowing the filter, not by paging there).
They also set ``show_full_result_count = False`` so no second, unfiltered count runs.
"""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property

COUNT_BOUND = 10_000


def _table_estimate(queryset) -> int | None:
    """PostgreSQL's row estimate of the queryset's table (``pg_class.reltuples``), or ``None`` elsewhere/unknown."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [queryset.model._meta.db_table]
        )
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None and row[0] >= 0 else None


class EstimatedCountPaginator(Paginator):
    """A count that reads at most ``COUNT_BOUND + 1`` rows, or the planner's estimate of an unfiltered big table."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        bounded = queryset.order_by()[: COUNT_BOUND + 1].count()
        if bounded <= COUNT_BOUND:
            return bounded
        if not queryset.query.where:
            estimate = _table_estimate(queryset)
            if estimate is not None and estimate > COUNT_BOUND:
                return estimate
        return COUNT_BOUND
