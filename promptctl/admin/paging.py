"""Admin lists over big tables: counts that stay cheap at a million rows, and per-page annotations.

Django's changelist counts every matching row to number its pages. On a big table that count is
the slowest query of the page, so lists over tables that only grow (the audit log, change
requests, and in evals/triage runs and logged requests) use ``EstimatedCountPaginator``: the
planner's estimate for the whole table on PostgreSQL, and a count capped at ``COUNT_BOUND`` rows
for a filtered list (its last pages are reached by narrowing the filter, not by paging there).
They also set ``show_full_result_count = False`` so no second, unfiltered count runs.

Also here: ``bounded_count`` (a per-row count that stops at ``COUNT_BOUND``) and
``IndexedValuesListFilter`` (a filter's choices read from the column's index, not by
``SELECT DISTINCT`` over the table).
"""

from __future__ import annotations

from django.contrib.admin.filters import AllValuesFieldListFilter
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import IntegerField
from django.db.models.expressions import RawSQL
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


def bounded_count(related_model, *, fk: str, outer_model, equals: dict[str, object] | None = None) -> RawSQL:
    """An annotation: how many ``related_model`` rows point at each row, counted up to ``COUNT_BOUND + 1``.

    One correlated subquery per row of the page, reading at most ``COUNT_BOUND + 1`` entries of the
    foreign key's index, instead of a GROUP BY over the whole child table. ``equals`` narrows the
    rows (e.g. ``{"origin": "outside"}``). Show the figure with ``count_text``.
    """
    table = related_model._meta.db_table
    column = related_model._meta.get_field(fk).column
    conditions, params = [f'counted."{column}" = "{outer_model._meta.db_table}"."{outer_model._meta.pk.column}"'], []
    for field_name, value in (equals or {}).items():
        conditions.append(f'counted."{related_model._meta.get_field(field_name).column}" = %s')
        params.append(value)
    sql = (
        f'SELECT COUNT(*) FROM (SELECT 1 FROM "{table}" counted WHERE {" AND ".join(conditions)} '
        f"LIMIT {COUNT_BOUND + 1}) bounded"
    )
    return RawSQL(sql, params, output_field=IntegerField())


def count_text(count: int) -> str:
    """``bounded_count``'s figure in words: "10,000+" once it passes the bound."""
    return f"{COUNT_BOUND:,}+" if count > COUNT_BOUND else f"{count:,}"


# The distinct values of one indexed column, by a loose index scan: one index probe per value (each
# the next value after the last), instead of reading every row as SELECT DISTINCT does. Both
# PostgreSQL and SQLite run it; bounded by a number of values.
_DISTINCT_BY_INDEX = """
WITH RECURSIVE walk(value, n) AS (
    SELECT MIN({column}), 1 FROM {table}
    UNION ALL
    SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > walk.value), n + 1
    FROM walk WHERE walk.value IS NOT NULL AND n < %s
)
SELECT value FROM walk WHERE value IS NOT NULL
"""
DISTINCT_VALUES_BOUND = 500


def distinct_values(model, field_name: str, *, using: str = "default") -> list:
    """The column's distinct values in order (at most ``DISTINCT_VALUES_BOUND``), read through its index.

    The column must lead an index, or each probe scans the table.
    """
    connection = connections[using]
    quote = connection.ops.quote_name
    sql = _DISTINCT_BY_INDEX.format(
        column=quote(model._meta.get_field(field_name).column), table=quote(model._meta.db_table)
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [DISTINCT_VALUES_BOUND])
        return [value for (value,) in cursor.fetchall()]


class IndexedValuesListFilter(AllValuesFieldListFilter):
    """``list_filter``'s all-values filter for a big table, its choices read by ``distinct_values``.

    Django's own runs ``SELECT DISTINCT`` over the whole table on every page view. This one reads
    the column's index instead, when the admin shows every row; an admin that narrows its rows per
    person keeps Django's query, so no value of a hidden row is offered.
    """

    def __init__(self, field, request, params, model, model_admin, field_path):
        super().__init__(field, request, params, model, model_admin, field_path)
        if field_path == field.name and not model_admin.get_queryset(request).query.where:
            self.lookup_choices = distinct_values(model, field.name)
