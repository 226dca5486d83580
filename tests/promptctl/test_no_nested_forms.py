"""No admin page puts a ``<form>`` inside a ``<form>``: the browser drops the inner one and its buttons break.

Every registered model's list, add and change pages and every custom admin
view (timeline, sync, diff, the change-request confirm pages, the evals and
triage views) are rendered for the admin with the tutorial's records in place,
and parsed with ``html.parser`` (not a regular expression).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, reverse
from django.urls.resolvers import RoutePattern

from promptctl import services
from promptctl.review import ACTION_LABELS

STANDARD = ("changelist", "add", "history", "delete", "change", "autocomplete")
PARAMETER = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")


class FormNesting(HTMLParser):
    """Records every ``<form>`` opened while another is still open (line, column)."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.nested: list[tuple[int, int]] = []
        self.forms = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "form":
            self.forms += 1
            if self.depth:
                self.nested.append(self.getpos())
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.depth:
            self.depth -= 1


def nested_forms(html: str) -> FormNesting:
    parser = FormNesting()
    parser.feed(html)
    parser.close()
    return parser


def test_the_parser_catches_a_form_inside_a_form():
    assert nested_forms("<form><p><form></form></p></form>").nested
    assert not nested_forms("<form></form><form><input></form>").nested


def _custom_urls(model_admin, obj) -> list[str]:
    """The admin's own views beyond Django's standard ones, with the object's id and each action filled in."""
    urls = []
    info = (model_admin.opts.app_label, model_admin.opts.model_name)
    for pattern in model_admin.get_urls():
        if not isinstance(pattern, URLPattern) or not pattern.name:
            continue
        if pattern.name in {f"{info[0]}_{info[1]}_{suffix}" for suffix in STANDARD}:
            continue
        if not isinstance(pattern.pattern, RoutePattern):
            continue  # a regular-expression route (django-simple-history's per-record page): no object to fill in
        route = str(pattern.pattern)
        names = [match["name"] for match in PARAMETER.finditer(route)]
        if not names:
            urls.append(reverse(f"admin:{pattern.name}"))
        elif names == ["object_id"] and obj is not None:
            urls.append(reverse(f"admin:{pattern.name}", args=[obj.pk]))
        elif names == ["object_id", "action"] and obj is not None:
            urls.extend(reverse(f"admin:{pattern.name}", args=[obj.pk, action]) for action in ACTION_LABELS)
    return urls


@pytest.mark.slow
def test_no_admin_page_nests_forms(tutorial_comparison, tutorial_agent, people):
    agent, v1, v2 = tutorial_agent
    services.change_request_create(
        agent=agent,
        kind="promote",
        target_number=v2.number,
        reason="route usage questions to api-platform",
        evidence_ref=f"comparison:{tutorial_comparison.pk}",
        accept_regression_reason="billing is fixed in v3",
        actor=people["alice"],
    )
    client = Client()
    client.force_login(people["ada"])
    pages: list[str] = [reverse("admin:index")]
    for model, model_admin in admin.site._registry.items():
        info = (model._meta.app_label, model._meta.model_name)
        pages.append(reverse("admin:{}_{}_changelist".format(*info)))
        pages.append(reverse("admin:{}_{}_add".format(*info)))
        obj = model._default_manager.first()
        if obj is not None:
            pages.append(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))
        pages.extend(_custom_urls(model_admin, obj))
    pages.append(reverse("admin:promptctl_changerequest_add") + f"?agent={agent.pk}")
    rendered = 0
    checked = []
    for url in pages:
        response = client.get(url)
        if response.status_code != 200 or "html" not in response.get("Content-Type", ""):
            continue  # refused (no add page), a redirect, or POST-only: nothing rendered to check
        rendered += 1
        checked.append(url)
        found = nested_forms(response.content.decode())
        assert not found.nested, f"{url}: a <form> opens inside another at (line, column) {found.nested}"
    assert rendered >= 40, checked
    for must in ("/timeline/", "/diff/", "/action/approve/", "/changerequest/add/?agent=", "/agent/"):
        assert any(must in url for url in checked), (must, checked)
