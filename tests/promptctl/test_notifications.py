"""Reviewers are told: e-mail to the approver group (not the actor) and signed webhooks, sent after commit.

The receiver is a real HTTP server on loopback (``tests.promptctl.webhook_support``)
that checks each signature with the webhook's secret. Tasks run in the test
process (``eager_tasks``) except in the real-worker test, where a real Celery
worker process delivers and retries. The admin's webhook forms and the
deliveries list's "Retry now" are clicked in Chromium in
tests/promptctl/test_notifications_browser.py; here are the rules behind them.
"""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import transaction
from django.urls import reverse

from promptctl import services
from promptctl.errors import DomainError
from promptctl.models import AuditEvent, WebhookDelivery
from tests.change_control_support import CHANNEL, V2, promote


def _emails(**addresses: str) -> None:
    for username, address in addresses.items():
        get_user_model().objects.filter(username=username).update(email=address)


def _webhook(receiver, admin_user, **options):
    issued = services.webhook_create(actor=admin_user, url=receiver.url, **options)
    receiver.secret = issued.secret
    return issued.webhook


def _file(agent, actor, *, number=None):
    return services.change_request_create(
        agent=agent,
        kind="promote",
        target_number=number or agent.latest_version_number,
        reason="v2 routes usage tickets to api-platform",
        actor=actor,
        channel=CHANNEL,
    )


def test_filing_emails_the_approver_group_but_not_the_actor_and_signs_one_webhook(
    agent, admin_user, reviewer, second_reviewer, requester, webhook_receiver, eager_tasks,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    _emails(ada="ada@example.com", victor="victor@example.com", wendy="wendy@example.com", rita="rita@example.com")
    webhook = _webhook(webhook_receiver, admin_user)
    services.version_create(agent=agent, system_prompt=V2, actor=requester)
    agent.refresh_from_db()

    with django_capture_on_commit_callbacks(execute=True):
        change = _file(agent, admin_user)  # ada files: she is a reviewer too, and must not be told of her own act

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert sorted(message.to) == ["victor@example.com", "wendy@example.com"]
    assert message.subject == (
        f"[promptctl] ticket-triage: change #{change.pk} filed by ada — promote v{agent.latest_version_number} "
        "(needs 1 approval)"
    )
    assert "Evidence:" in message.body and f"/admin/promptctl/changerequest/{change.pk}/change/" in message.body
    assert "http://127.0.0.1:8000/admin/" in message.body
    assert len(webhook_receiver.requests) == 1
    received = webhook_receiver.requests[0]
    assert received.verified, "the signature must verify with the webhook's secret"
    assert received.headers["X-Promptctl-Event"] == "change.filed"
    delivery = WebhookDelivery.objects.get(webhook=webhook)
    assert received.headers["X-Promptctl-Delivery"] == str(delivery.pk)
    assert received.json["change"]["id"] == change.pk and received.json["actor"] == "ada"
    assert (delivery.status, delivery.attempts, delivery.last_response_code) == ("delivered", 1, 200)


def test_approving_tells_everyone_but_the_approver_and_says_it_is_ready(
    agent, admin_user, reviewer, requester, webhook_receiver, eager_tasks, django_capture_on_commit_callbacks
):
    _emails(ada="ada@example.com", victor="victor@example.com")
    _webhook(webhook_receiver, admin_user, events=["change.approved"])
    services.version_create(agent=agent, system_prompt=V2, actor=requester)
    agent.refresh_from_db()
    change = _file(agent, requester)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        services.change_request_approve(change=change, reviewer=reviewer)

    assert [message.to for message in mail.outbox] == [["ada@example.com"]]
    assert "approved by victor" in mail.outbox[0].subject and "ready to apply" in mail.outbox[0].subject
    assert "Approvals: 1 of 1 (victor)" in mail.outbox[0].body
    # The webhook filters on change.approved: the filing (outside any capture) queued nothing for it.
    assert [r.headers["X-Promptctl-Event"] for r in webhook_receiver.requests] == ["change.approved"]


def test_a_rolled_back_transaction_tells_nobody(
    agent, admin_user, reviewer, requester, webhook_receiver, eager_tasks, django_capture_on_commit_callbacks
):
    _emails(victor="victor@example.com")
    _webhook(webhook_receiver, admin_user)
    services.version_create(agent=agent, system_prompt=V2, actor=requester)
    agent.refresh_from_db()

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        with transaction.atomic():
            _file(agent, requester)
            raise RuntimeError("the caller's transaction fails after filing")

    assert mail.outbox == []
    assert webhook_receiver.requests == []
    assert not WebhookDelivery.objects.exists()


def test_a_tripped_canary_says_promptctl_filed_the_rollback(
    agent, admin_user, reviewer, requester, webhook_receiver, eager_tasks, django_capture_on_commit_callbacks
):
    from triage.services.canary import system_user_ensure

    _emails(victor="victor@example.com")
    _webhook(webhook_receiver, admin_user, format="slack")
    first = agent.latest_version_number
    promote(agent, first, requester, reviewer)
    second = services.version_create(agent=agent, system_prompt=V2, actor=requester).number
    promote(agent, second, requester, reviewer)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        change = services.change_request_create(
            agent=agent,
            kind="rollback",
            target_number=first,
            reason="promptctl ends the canary automatically: invalid rate crossed",
            actor=system_user_ensure(),
            channel=CHANNEL,
            filed_by_promptctl=True,
        )

    subject = mail.outbox[-1].subject
    assert f"canary tripped — promptctl filed change #{change.pk}: rollback v{first}" in subject
    assert "(automatically: the canary crossed its limits)" in mail.outbox[-1].body
    slack = webhook_receiver.requests[-1]
    assert slack.verified and set(slack.json) == {"text"} and "canary tripped" in slack.json["text"]


def test_a_failing_receiver_ends_failed_with_its_error_and_a_retry_delivers_it(
    agent, admin_user, requester, webhook_receiver, eager_tasks, django_capture_on_commit_callbacks, settings
):
    """The rule behind the deliveries list's "Retry now" (clicked in tests/promptctl/test_notifications_browser.py)."""
    settings.PROMPTCTL_WEBHOOK_MAX_ATTEMPTS = 3
    settings.PROMPTCTL_WEBHOOK_BACKOFF = 0  # eager: each retry runs at once
    webhook_receiver.answers = [503, 503, 503]
    _webhook(webhook_receiver, admin_user)
    services.version_create(agent=agent, system_prompt=V2, actor=requester)
    agent.refresh_from_db()

    with django_capture_on_commit_callbacks(execute=True):
        _file(agent, requester)

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_response_code) == ("failed", 3, 503)
    assert delivery.last_error == "receiver says 503"
    assert len(webhook_receiver.requests) == 3 and all(r.verified for r in webhook_receiver.requests)

    with pytest.raises(DomainError, match="change_webhook"):
        services.webhook_delivery_retry(delivery=delivery, actor=requester)
    with django_capture_on_commit_callbacks(execute=True):
        services.webhook_delivery_retry(delivery=delivery, actor=admin_user)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_response_code) == ("delivered", 4, 200)
    assert AuditEvent.objects.filter(verb="webhook.retry", object_id=str(delivery.pk)).exists()
    with pytest.raises(DomainError, match="delivered already"):
        services.webhook_delivery_retry(delivery=delivery, actor=admin_user)


def test_webhooks_are_made_by_admins_only_and_audited_without_their_secret(admin_user, requester):
    """The rules behind the webhook forms (clicked in tests/promptctl/test_notifications_browser.py)."""
    with pytest.raises(DomainError, match="promptctl.add_webhook"):
        services.webhook_create(actor=requester, url="https://hooks.example.com/x")
    with pytest.raises(DomainError, match="not an http"):
        services.webhook_create(actor=admin_user, url="file:///etc/passwd")

    issued = services.webhook_create(
        actor=admin_user, url="https://hooks.example.com/promptctl", events=["change.filed"]
    )
    assert issued.secret == issued.webhook.secret and issued.secret.startswith("whsec_")
    create = AuditEvent.objects.get(verb="webhook.create")
    assert create.after["events"] == ["change.filed"] and issued.secret not in str(create.after)

    rotated = services.webhook_update(
        webhook=issued.webhook,
        actor=admin_user,
        rotate_secret=True,
        url="https://hooks.example.com/v2",
        events=[],
        format="slack",
        agent=None,
        active=True,
    )
    assert rotated.secret and rotated.secret != issued.secret
    update = AuditEvent.objects.get(verb="webhook.update")
    assert update.after["secret_rotated"] is True and update.after["format"] == "slack"
    assert rotated.secret not in str(update.after)


@pytest.mark.slow
def test_a_real_worker_retries_a_failing_receiver_and_the_admin_lists_each_attempt(
    agent, admin_user, requester, webhook_receiver, workers, client
):
    webhook_receiver.answers = [500, 500]  # then 200
    webhook = _webhook(webhook_receiver, admin_user)
    services.version_create(agent=agent, system_prompt=V2, actor=requester)
    agent.refresh_from_db()
    workers.start(concurrency=2, PROMPTCTL_WEBHOOK_BACKOFF="0.2")
    workers.wait_ready()

    change = _file(agent, requester)  # autocommit: on_commit sends the task at once

    deadline = time.monotonic() + 60
    delivery = WebhookDelivery.objects.get(webhook=webhook)
    while delivery.status == "pending" and time.monotonic() < deadline:
        time.sleep(0.1)
        delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_response_code) == ("delivered", 3, 200)
    assert [r.headers["X-Promptctl-Delivery"] for r in webhook_receiver.requests] == [str(delivery.pk)] * 3
    assert all(r.verified for r in webhook_receiver.requests)
    assert webhook_receiver.requests[0].json["change"]["id"] == change.pk

    client.force_login(admin_user)
    page = client.get(reverse("admin:promptctl_webhookdelivery_changelist")).content.decode()
    assert "change.filed" in page and "delivered" in page
    assert '<td class="field-attempts">3</td>' in page and '<td class="field-last_response_code">200</td>' in page
