"""Webhooks in the admin, clicked in Debian's headless Chromium: add, change (rotate the secret), Retry now.

An admin adds a webhook on its add form and is shown its signing secret once,
in the message; the list never shows it again; the change form rotates it.
A delivery that failed every attempt is retried from the deliveries list with
the "Retry now" action, and the receiver (a real HTTP server on loopback,
``tests.promptctl.webhook_support``) gets it, signed. These were test-client
posts in tests/promptctl/test_notifications.py; the buttons are clicked now
and the page each click lands on is checked, with what it changed.
"""

from __future__ import annotations

import re

import pytest

from promptctl import services
from promptctl.models import AuditEvent, Webhook, WebhookDelivery
from tests.browser_support import admin_login
from tests.change_control_support import CHANNEL, PASSWORD, V2

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def login(browser_page, username: str):
    page = browser_page()
    admin_login(page, username=username, password=PASSWORD)
    return page


def test_an_admin_adds_a_webhook_sees_its_secret_once_and_rotates_it(admin_user, requester, browser_page):
    # A requester has no Add button, and the add page refuses them.
    rita = login(browser_page, "rita")
    response = rita.goto("/admin/promptctl/webhook/add/")
    assert response is not None and response.status == 403
    assert not Webhook.objects.exists()

    ada = login(browser_page, "ada")
    ada.goto("/admin/promptctl/webhook/")
    ada.click(".object-tools a.addlink")
    ada.wait_for_url("**/admin/promptctl/webhook/add/")
    ada.fill("#id_url", "https://hooks.example.com/promptctl")
    ada.check("input[name=events][value='change.filed']")
    ada.select_option("#id_format", "json")
    if not ada.is_checked("#id_active"):
        ada.check("#id_active")
    ada.click("input[name=_save]")
    ada.wait_for_url("**/admin/promptctl/webhook/")

    webhook = Webhook.objects.get()
    assert webhook.url == "https://hooks.example.com/promptctl" and webhook.events == ["change.filed"]
    assert webhook.secret.startswith("whsec_")
    assert webhook.secret in ada.inner_text(".messagelist")  # shown once, in the message
    assert webhook.secret not in ada.inner_text("#result_list")
    ada.reload()
    assert webhook.secret not in ada.content()  # and never again
    create = AuditEvent.objects.get(verb="webhook.create")
    assert create.actor.username == "ada"
    assert create.after["events"] == ["change.filed"] and webhook.secret not in str(create.after)

    # The change form rotates the secret: the new one is shown once, the old one no longer signs.
    ada.click(f"#result_list a[href$='/admin/promptctl/webhook/{webhook.pk}/change/']")
    ada.wait_for_url(re.compile(rf"/admin/promptctl/webhook/{webhook.pk}/change/"))
    assert webhook.secret not in ada.content()  # the page shows the secret masked
    ada.fill("#id_url", "https://hooks.example.com/v2")
    ada.select_option("#id_format", "slack")
    ada.check("#id_rotate_secret")
    ada.click("input[name=_save]")
    ada.wait_for_url("**/admin/promptctl/webhook/")
    old_secret = webhook.secret
    webhook.refresh_from_db()
    assert (webhook.url, webhook.format) == ("https://hooks.example.com/v2", "slack")
    assert webhook.secret != old_secret and webhook.secret in ada.inner_text(".messagelist")
    update = AuditEvent.objects.get(verb="webhook.update")
    assert update.after["secret_rotated"] is True and update.after["format"] == "slack"
    assert webhook.secret not in str(update.after)


def test_retry_now_delivers_a_failed_delivery(
    agent, admin_user, requester, webhook_receiver, eager_tasks, settings, browser_page
):
    settings.PROMPTCTL_WEBHOOK_MAX_ATTEMPTS = 3
    settings.PROMPTCTL_WEBHOOK_BACKOFF = 0  # eager: each retry runs at once
    webhook_receiver.answers = [503, 503, 503]
    issued = services.webhook_create(actor=admin_user, url=webhook_receiver.url)
    webhook_receiver.secret = issued.secret
    services.version_create(agent=agent, system_prompt=V2, actor=requester)
    agent.refresh_from_db()
    # Autocommit (a transactional test): the filing's delivery runs, and fails, as the filing commits.
    services.change_request_create(
        agent=agent,
        kind="promote",
        target_number=agent.latest_version_number,
        reason="v2 routes usage tickets to api-platform",
        actor=requester,
        channel=CHANNEL,
    )
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_response_code) == ("failed", 3, 503)

    ada = login(browser_page, "ada")
    ada.goto("/admin/promptctl/webhookdelivery/")
    assert "failed" in ada.inner_text("#result_list")
    ada.check(f"input[name=_selected_action][value='{delivery.pk}']")
    ada.select_option("select[name=action]", "retry_now")
    ada.click("button[name=index]")
    ada.wait_for_selector(".messagelist")

    assert ada.url.endswith("/admin/promptctl/webhookdelivery/")
    assert "1 delivery queued for another attempt." in ada.inner_text(".messagelist")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_response_code) == ("delivered", 4, 200)
    assert len(webhook_receiver.requests) == 4 and all(r.verified for r in webhook_receiver.requests)
    retry = AuditEvent.objects.get(verb="webhook.retry", object_id=str(delivery.pk))
    assert retry.actor.username == "ada" and retry.before == {"status": "failed", "attempts": 3}
    ada.reload()
    assert "delivered" in ada.inner_text("#result_list")

    # Delivered: a second Retry now is refused in words, and nothing is sent.
    ada.check(f"input[name=_selected_action][value='{delivery.pk}']")
    ada.select_option("select[name=action]", "retry_now")
    ada.click("button[name=index]")
    ada.wait_for_selector(".messagelist")
    assert "was delivered already: nothing to retry" in ada.inner_text(".messagelist")
    assert len(webhook_receiver.requests) == 4
