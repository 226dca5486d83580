"""The change-control pages stay bounded however long an agent's history grows (issue 16).

The agent page shows only its recent versions and links to the full, paged list; the timeline
pages through a merged stream with a ``?before=`` cursor, a fixed number of queries per page,
every entry exactly once; the change request list counts approvals for its page only.
Rows are written directly (versions are immutable and have no history) to keep the tests fast; change
requests and approvals go through the services.
"""

from __future__ import annotations

import datetime as dt
import re

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from promptctl import selectors, services
from promptctl.admin.paging import EstimatedCountPaginator
from promptctl.models import Agent, AgentVersion, AuditEvent
from tests.change_control_support import CHANNEL

BASE_NUMBER = 1_700_000_000_000
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _agent(requester) -> Agent:
    return Agent.objects.create(
        name="scale-agent",
        remote_id="agent_fake_scale",
        environment_id="env_fake",
        model="claude-sonnet-4-6",
        latest_version_number=BASE_NUMBER,
        created_by=requester,
    )


def _versions(agent: Agent, requester, count: int, *, tie_every: int = 0) -> None:
    """Versions ``count`` more, a minute apart (``tie_every``: every n-th shares its moment with the one before)."""
    start = agent.versions.count()
    rows = []
    for index in range(start, start + count):
        minute = index - 1 if tie_every and index % tie_every == 0 else index
        rows.append(
            AgentVersion(
                agent=agent,
                number=BASE_NUMBER + index,
                system_prompt=f"prompt {index}",
                model="claude-sonnet-4-6",
                config={"system": f"prompt {index}"},
                config_sha256=f"{index:064x}",
                config_canonical_sha256=f"{index:064x}",
                origin="promptctl" if index % 7 else "outside",
                created_by=requester if index % 7 else None,
                created_at=START + dt.timedelta(minutes=minute),
            )
        )
    AgentVersion.objects.bulk_create(rows, batch_size=500)  # immutable: no history table
    Agent.objects.filter(pk=agent.pk).update(latest_version_number=BASE_NUMBER + start + count - 1)


def _changes(agent: Agent, requester, reviewer, count: int) -> None:
    """Change requests filed and (every other one) approved through the services."""
    numbers = list(agent.versions.order_by("-number").values_list("number", flat=True)[:count])
    for index, number in enumerate(numbers):
        change = services.change_request_create(
            agent=agent, kind="promote", target_number=number, reason=f"scale {index}", actor=requester, channel=CHANNEL
        )
        if index % 2:
            services.change_request_approve(change=change, reviewer=reviewer)


def test_the_agent_page_lists_only_the_recent_versions(requester, admin_user, django_assert_max_num_queries):
    agent = _agent(requester)
    _versions(agent, requester, 30)
    client = logged_in(admin_user)
    url = reverse("admin:promptctl_agent_change", args=[agent.pk])
    client.get(url)  # warm caches (content types, permissions)
    with CaptureQueriesContext(connection) as small:
        assert client.get(url).status_code == 200
    _versions(agent, requester, 470)
    with django_assert_max_num_queries(len(small.captured_queries)):
        page = client.get(url).content.decode()
    recent = page[page.index('id="recent-versions"') :]
    shown = re.findall(r">v(\d+)</a>", recent)
    assert shown == [str(BASE_NUMBER + index) for index in range(499, 479, -1)]  # the newest 20, newest first
    assert "Recent versions (20 of 500)" in recent
    versions_url = reverse("admin:promptctl_agentversion_changelist") + f"?agent__id__exact={agent.pk}"
    assert f'href="{versions_url}"' in recent and "All 500 versions of scale-agent" in recent
    assert "prompt 499" not in page  # no prompt text on the agent page
    drift = page[page.index('id="drift-warning"') : page.index("made directly on the server")]
    outside = sum(1 for index in range(500) if not index % 7)
    assert len(re.findall(r">v\d+</a>", drift)) == 20 and f">{outside} versions</a>" in drift


def test_the_timeline_runs_a_flat_number_of_queries(requester, reviewer, admin_user, django_assert_max_num_queries):
    agent = _agent(requester)
    _versions(agent, requester, 20)
    _changes(agent, requester, reviewer, 4)
    client = logged_in(admin_user)
    url = reverse("admin:promptctl_agent_timeline", args=[agent.pk])
    client.get(url)
    with CaptureQueriesContext(connection) as small:
        assert client.get(url).status_code == 200
    _versions(agent, requester, 600)
    _changes(agent, requester, reviewer, 30)
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = client.get(url)
    page = response.content.decode()
    assert page.count('<tr class="timeline-') <= selectors.TIMELINE_PAGE_SIZE
    assert 'id="timeline-older"' in page


def test_the_timeline_cursor_pages_through_everything_exactly_once(requester, reviewer, admin_user):
    agent = _agent(requester)
    _versions(agent, requester, 130, tie_every=5)  # ties straddle page boundaries
    _changes(agent, requester, reviewer, 9)
    expected = sorted(
        [f"created version {BASE_NUMBER + i}" for i in range(130) if i % 7]
        + [f"version {BASE_NUMBER + i} found on the server" for i in range(130) if not i % 7]
    )
    seen: list[str] = []
    before = None
    pages = 0
    while True:
        page = selectors.agent_timeline_page(agent=agent, before=before, limit=11)
        pages += 1
        assert page.entries == sorted(page.entries, key=lambda entry: entry.at, reverse=True)
        assert len(page.entries) <= 11
        seen.extend(entry.summary for entry in page.entries)
        if page.next_before is None:
            break
        assert all(entry.at > page.next_before for entry in page.entries)
        before = page.next_before
    assert pages > 10
    versions_seen = sorted(
        summary.split(":")[0] for summary in seen if summary.startswith(("created version", "version "))
    )
    assert versions_seen == expected
    assert len(seen) == len(set(seen))  # nothing twice
    assert sum(summary.startswith("requested #") for summary in seen) == 9
    assert sum(summary.startswith("approved #") for summary in seen) == 4
    # The admin pages follow the same cursor: the "Older entries" links reach the first version.
    client = logged_in(admin_user)
    url = reverse("admin:promptctl_agent_timeline", args=[agent.pk])
    rows = 0
    for _ in range(20):
        page = client.get(url).content.decode()
        rows += page.count('<tr class="timeline-')
        found = re.search(r'href="([^"]+)" id="timeline-older"', page)
        if not found:
            break
        url = found.group(1).replace("&amp;", "&")
    assert f"created version {BASE_NUMBER + 1}<" in page or f"version {BASE_NUMBER} found" in page
    assert rows == len(seen)


def test_a_bad_cursor_shows_the_newest_entries_and_says_why(requester, admin_user):
    agent = _agent(requester)
    _versions(agent, requester, 3)
    url = reverse("admin:promptctl_agent_timeline", args=[agent.pk]) + "?before=yesterday"
    page = logged_in(admin_user).get(url).content.decode()
    assert "is not a moment of the timeline" in page and f"created version {BASE_NUMBER + 2}" in page


def test_the_change_request_list_counts_approvals_of_its_page(requester, reviewer, admin_user):
    agent = _agent(requester)
    _versions(agent, requester, 6)
    _changes(agent, requester, reviewer, 6)
    page = logged_in(admin_user).get(reverse("admin:promptctl_changerequest_changelist")).content.decode()
    counts = re.findall(r'<td class="field-approvals_text">(\d+)/(\d+)</td>', page)
    assert sorted(counts) == [("0", "1")] * 3 + [("1", "1")] * 3


def test_big_lists_count_at_most_a_bound(requester, monkeypatch):
    monkeypatch.setattr("promptctl.admin.paging.COUNT_BOUND", 5)
    agent = _agent(requester)
    _versions(agent, requester, 12)
    assert EstimatedCountPaginator(AgentVersion.objects.filter(agent=agent), 100).count == 5
    assert EstimatedCountPaginator(AuditEvent.objects.none(), 100).count == 0
    started = timezone.now()
    assert EstimatedCountPaginator(AgentVersion.objects.filter(created_at__gt=started), 100).count == 0


def test_the_agent_page_counts_versions_up_to_a_bound(requester, admin_user, monkeypatch):
    agent = _agent(requester)
    _versions(agent, requester, 12)  # every 7th made outside promptctl: 0 and 7
    url = reverse("admin:promptctl_agent_change", args=[agent.pk])
    page = logged_in(admin_user).get(url).content.decode()
    assert "All 12 versions of scale-agent" in page and "Recent versions (12 of 12)" in page
    assert (
        logged_in(admin_user)
        .get(reverse("admin:promptctl_agent_changelist"))
        .content.decode()
        .count("2 changed outside promptctl")
        == 1
    )
    monkeypatch.setattr("promptctl.admin.paging.COUNT_BOUND", 5)
    with CaptureQueriesContext(connection) as queries:
        page = logged_in(admin_user).get(url).content.decode()
    assert "All 5+ versions of scale-agent" in page
    counting = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counting and all("LIMIT 6" in sql for sql in counting), counting


def test_filter_choices_are_read_from_the_index_not_by_distinct(requester, reviewer, admin_user):
    from promptctl.admin.paging import distinct_values

    agent = _agent(requester)
    _versions(agent, requester, 4)
    _changes(agent, requester, reviewer, 2)
    verbs = sorted(set(AuditEvent.objects.values_list("verb", flat=True)))
    assert len(verbs) >= 3 and distinct_values(AuditEvent, "verb") == verbs
    with CaptureQueriesContext(connection) as queries:
        page = logged_in(admin_user).get(reverse("admin:promptctl_auditevent_changelist")).content.decode()
    for verb in verbs:
        assert f"?verb={verb}" in page, verb  # a choice of the filter, linked
    sql = [q["sql"].upper() for q in queries.captured_queries]
    assert not any("SELECT DISTINCT" in statement for statement in sql), sql
    assert sum("WITH RECURSIVE" in statement for statement in sql) == 2  # verb and object type
