"""The triage paths that must cost the same at any size: the canary check's counters and the request-log page.

The canary counter is compared with a full count of the log after canary calls that ended valid, invalid and
failed (real SDK against the emulator, real API). The request log is seeded past the SQLite search bound and
its page's queries are read: each bounded, none a date_hierarchy MIN/MAX, the search once per query.
On PostgreSQL, EXPLAIN shows the trigram index serving the subject search.
"""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.triage.support import V_RENAMED, Api, ticket
from triage import selectors, services
from triage.admin.request_log import COUNT_LIMIT, SQLITE_SEARCH_ROWS
from triage.models import CanaryCounter, Outcome, TriageRequest


def test_canary_counters_equal_a_full_count_after_mixed_outcomes(production, people, emulator, settings):
    bad = production.new_version(V_RENAMED)  # every canary reply is invalid
    production.canary(bad, 50)
    production.policy.canary_min_requests = 10_000  # watched, never ended: this test is about the figures
    services.routing_policy_save(policy=production.policy, actor=people.admin)
    client = Api(services.api_key_create(name="mixed", actor=people.admin, all_agents=True).secret)
    for index in range(16):
        client.post("/triage", ticket(index, request_key=f"m{index}"))
    settings.PROMPTCTL_MAX_ATTEMPTS = 1
    emulator.configure(fault_500=1.0)
    for index in range(16, 30):
        client.post("/triage", ticket(index, request_key=f"m{index}"))
    emulator.configure(fault_500=0.0)

    revision = production.agent.pins.get().revision
    kept = selectors.canary_stats(agent_id=production.agent.pk, pin_revision=revision)
    counted = selectors.canary_stats_counted(agent_id=production.agent.pk, pin_revision=revision)
    assert kept == counted
    assert kept.requests > kept.invalid > 0 and kept.errors > 0, kept
    assert kept.requests == TriageRequest.objects.filter(canary=True).count() < TriageRequest.objects.count()
    assert CanaryCounter.objects.count() == 1, "one row per (agent, pin revision); production calls are not counted"


def test_the_canary_check_reads_one_row_whatever_the_traffic(production, people, django_assert_num_queries):
    revision = production.agent.pins.get().revision
    CanaryCounter.objects.create(agent=production.agent, pin_revision=revision, requests=50_000, invalid=10, errors=3)
    with django_assert_num_queries(1) as captured:
        stats = selectors.canary_stats(agent_id=production.agent.pk, pin_revision=revision)
    assert (stats.requests, stats.invalid, stats.errors) == (50_000, 10, 3)
    assert "triage_triagerequest" not in captured.captured_queries[0]["sql"]


def test_limits_crossed_is_the_one_rule_both_checks_use():
    stats = selectors.CanaryStats(requests=20, invalid=5, errors=0)
    limits = {"canary_min_requests": 10, "canary_max_invalid_rate": 0.2, "canary_max_error_rate": 0.5}
    assert selectors.canary_limits_crossed(stats, limits) == ["invalid output"]
    assert selectors.canary_limits_crossed(stats, {**limits, "canary_min_requests": 21}) == []


# --- the request log at size ---------------------------------------------------------------------


def _seed(template: TriageRequest, *, count: int, subject, start: int) -> None:
    """``count`` copies of one logged row, ``received_at`` one second apart starting ``start`` seconds ago."""
    now = timezone.now()
    fields = {
        field.attname: getattr(template, field.attname)
        for field in TriageRequest._meta.concrete_fields
        if field.attname
        not in ("id", "received_at", "subject", "outcome", "team", "priority", "canary", "session_id", "request_key")
    }
    rows = [
        TriageRequest(
            **fields,
            received_at=now - timezone.timedelta(seconds=start - index),
            subject=subject(index),
            outcome=Outcome.INVALID if index % 3 == 0 else Outcome.OK,
            canary=False,
            team="billing",
            priority="P2",
        )
        for index in range(count)
    ]
    TriageRequest.objects.bulk_create(rows, batch_size=1000)


OLD_INVOICES = 1000
RECENT_INVOICES = SQLITE_SEARCH_ROWS // 10


@pytest.fixture
def big_log(production, api):
    """The oldest 1,000 rows mention an invoice; of the newest SQLITE_SEARCH_ROWS, one in ten does."""
    api.post("/triage", ticket(0))
    template = TriageRequest.objects.get()
    _seed(template, count=OLD_INVOICES, subject=lambda i: f"old Invoice {i}", start=100_000)
    _seed(
        template,
        count=SQLITE_SEARCH_ROWS,
        subject=lambda i: f"recent invoice {i}" if i % 10 == 0 else f"recent login {i}",
        start=SQLITE_SEARCH_ROWS + 10,
    )
    return template


@pytest.fixture
def admin_browser(people):
    client = Client()
    client.force_login(people.admin)
    return client


def _page(client: Client, **query):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("admin:triage_triagerequest_changelist"), query)
    assert response.status_code == 200
    return response, [q["sql"] for q in queries.captured_queries]


def _searching(sql: list[str]) -> list[str]:
    return [q for q in sql if "LIKE" in q.upper() and "triage_triagerequest" in q]


def test_request_log_search_is_bounded_and_runs_once_per_query(big_log, admin_browser):
    _, plain = _page(admin_browser)
    response, sql = _page(admin_browser, q="invoice")
    assert len(sql) <= len(plain) + 1, "searching adds at most the SQLite bound's one read"
    searching = _searching(sql)
    assert len(searching) == 2, searching  # the page's rows and its (bounded) count; no full count, no MIN/MAX
    assert all("LIMIT" in q.upper() for q in searching), searching
    assert not [q for q in sql if re.search(r"\b(MIN|MAX)\(", q.upper())], "no date_hierarchy bounds"
    page = response.content.decode()
    cl = response.context["cl"]
    if connection.vendor == "postgresql":
        assert cl.result_count == OLD_INVOICES + RECENT_INVOICES
    else:
        newest = TriageRequest.objects.order_by("-received_at", "-id").values_list("subject", flat=True)
        expected = sum("invoice" in subject.lower() for subject in newest[:SQLITE_SEARCH_ROWS])
        assert cl.result_count == expected and RECENT_INVOICES - 1 <= expected, "SQLite searches only the newest rows"
        assert f"newest {SQLITE_SEARCH_ROWS:,} requests" in page
    assert page.count('class="action-select"') == 100


def test_request_log_counts_are_bounded(big_log, admin_browser):
    response, sql = _page(admin_browser, outcome="invalid")
    counts = [q for q in sql if "COUNT(" in q.upper() and "triage_triagerequest" in q]
    assert counts and all("LIMIT" in q.upper() for q in counts), counts
    invalid = TriageRequest.objects.filter(outcome=Outcome.INVALID).count()
    assert invalid > 1000 and response.context["cl"].result_count == min(COUNT_LIMIT, invalid)
    assert response.context["cl"].full_result_count is None, "no second, unfiltered count"


def test_search_finds_a_request_by_its_exact_key(big_log, admin_browser):
    response, _ = _page(admin_browser, q=big_log.session_id)
    rows = list(response.context["cl"].result_list)
    assert big_log.session_id and rows == [big_log]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigram index exists only on PostgreSQL")
def test_postgresql_serves_the_subject_search_from_the_trigram_index(big_log):
    from triage.admin.request_log import request_log_search

    queryset = request_log_search(TriageRequest.objects.all(), "invoice")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE triage_triagerequest")
        # Few rows here, so the planner may walk the received_at index and filter instead; with plain scans off,
        # the plan shows whether the trigram index can serve the match (at size the planner picks it on its own).
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        plan = queryset.explain()
    assert "triagerequest_subject_trgm" in plan, plan
