"""Personal tokens: shown once, stored hashed, expiring, revocable; the CLI acts only as the token's owner.

Creating and revoking are clicked in Chromium (the browser tests at the end); the one test that posts to
an admin URL does so on purpose, to show a forged request (no checkbox, no such choice) changes nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import RequestFactory
from django.utils import timezone
from ninja.errors import HttpError

from promptctl import services
from promptctl.api_auth import PersonalTokenAuth, acting
from promptctl.audit import audit_verify
from promptctl.audit.macs import event_payload
from promptctl.errors import DomainError
from promptctl.middleware import token_bind, token_current
from promptctl.models import AuditEvent, ChangeRequest, PersonalToken
from tests.change_control_support import CHANNEL, PASSWORD
from tests.cli_support import token_env, token_secret_for


def run(*args: str, secret: str | None) -> tuple[int, str, str]:
    """``manage.py promptctl ARGS`` with ``PROMPTCTL_TOKEN`` set to ``secret`` (unset for None)."""
    out, err = io.StringIO(), io.StringIO()
    with token_env(secret):
        try:
            call_command("promptctl", *args, stdout=out, stderr=err)
        except SystemExit as exit_:
            return int(exit_.code), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def every_stored_text() -> str:
    chunks = []
    with connection.cursor() as cursor:
        for model in (PersonalToken, PersonalToken.history.model, AuditEvent):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(model._meta.db_table)}")
            chunks.extend(str(value) for row in cursor.fetchall() for value in row)
    return "\n".join(chunks)


@pytest.fixture
def bot(db):
    return services.user_create(username="ci-bot", role="bot")


@pytest.fixture
def filed(agent, requester):
    """A staging promotion of v1 filed by rita."""
    return services.change_request_create(
        agent=agent, kind="promote", target_number=agent.latest_version_number, reason="ship", actor=requester,
        channel=CHANNEL,
    )  # fmt: skip


def test_a_token_is_shown_once_and_stored_only_as_a_hash(requester):
    issued = services.token_create(user=requester, actor=requester, name="laptop")
    assert issued.secret.startswith("pctlu_") and len(issued.secret) > 40
    token = PersonalToken.objects.get(pk=issued.token.pk)
    assert token.key_hash == hashlib.sha256(issued.secret.encode()).hexdigest()
    assert token.prefix == issued.secret[:12]
    assert abs((token.expires_at - timezone.now()) - timedelta(days=90)) < timedelta(minutes=1)
    stored = every_stored_text()
    assert issued.secret not in stored
    assert token.key_hash not in stored.replace(token.key_hash, "", 1)  # only the token row's own column
    event = AuditEvent.objects.get(verb="token.create")
    assert event.actor_id == requester.pk
    assert event.after == {
        "user": "rita", "name": "laptop", "prefix": token.prefix, "read_only": False,
        "expires_at": token.expires_at.isoformat(),
    }  # fmt: skip
    principal = services.token_authenticate(secret=issued.secret)
    assert principal.user == requester and principal.token_id == token.pk and principal.read_only is False


def test_the_cli_prints_the_secret_once_and_lists_without_it(requester):
    secret = token_secret_for(requester)
    code, out, err = run("--json", "token", "create", "--name", "ci", "--read-only", secret=secret)
    assert code == 0, err
    created = json.loads(out)
    assert created["secret"].startswith("pctlu_") and created["read_only"] is True
    code, out, err = run("--json", "token", "list", secret=secret)
    assert code == 0, err
    assert created["secret"] not in out and {t["name"] for t in json.loads(out)} >= {"ci"}


def test_expired_revoked_and_inactive_tokens_are_refused_on_the_next_call(requester, reviewer):
    expiring = services.token_create(user=requester, actor=requester, name="short", expires_in_days=1)
    PersonalToken.objects.filter(pk=expiring.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(services.TokenRefused, match="expired on"):
        services.token_authenticate(secret=expiring.secret)

    secret = token_secret_for(requester)
    assert run("token", "list", secret=secret)[0] == 0
    services.token_revoke(token=PersonalToken.objects.get(user=requester, name__startswith="test-"), actor=requester)
    code, _out, err = run("token", "list", secret=secret)
    assert code == 1 and "was revoked on" in err and len(err.strip().splitlines()) == 1
    assert AuditEvent.objects.filter(verb="token.revoke", actor=requester).count() == 1

    victors = token_secret_for(reviewer)
    reviewer.is_active = False
    reviewer.save()
    with pytest.raises(services.TokenRefused, match="victor, who is inactive"):
        services.token_authenticate(secret=victors)
    with pytest.raises(services.TokenRefused, match="not known"):
        services.token_authenticate(secret="pctlu_" + "x" * 43)
    with pytest.raises(services.TokenRefused, match="not a promptctl personal token"):
        services.token_authenticate(secret="pctl_a-triage-api-key")


def test_nobody_creates_a_token_for_another_person_and_admins_only_for_bots(requester, reviewer, bot):
    with pytest.raises(DomainError, match="needs the auth.change_user permission"):
        services.token_create(user=reviewer, actor=requester, name="sneaky")
    with pytest.raises(DomainError, match="needs the auth.change_user permission"):
        services.token_create(user=bot, actor=requester, name="sneaky")
    admin = services.user_create(username="ada", role="admin", password=PASSWORD)
    with pytest.raises(DomainError, match="a person creates their own"):
        services.token_create(user=reviewer, actor=admin, name="sneaky")
    issued = services.token_create(user=bot, actor=admin, name="ci", expires_in_days=None)
    assert issued.token.user == bot and issued.token.expires_at is None and issued.token.created_by == admin
    with pytest.raises(DomainError, match="needs the auth.change_user permission"):
        services.token_revoke(token=issued.token, actor=requester)
    services.token_revoke(token=issued.token, actor=admin)
    assert PersonalToken.objects.filter(user__in=[reviewer, requester]).count() == 0


def test_a_bot_files_and_applies_but_never_approves_even_as_a_reviewer(agent, requester, reviewer, bot):
    assert sorted(bot.groups.values_list("name", flat=True)) == ["bots", "requesters"] and not bot.is_staff
    change = services.change_request_create(
        agent=agent, kind="promote", target_number=agent.latest_version_number, reason="ci", actor=bot, channel=CHANNEL
    )
    with pytest.raises(DomainError, match="service account .* cannot approve"):
        services.change_request_approve(change=change, reviewer=bot)
    bot.groups.add(*services.roles_ensure().values())  # someone adds the bot to reviewers later
    other = services.change_request_create(
        agent=agent, kind="promote", target_number=agent.latest_version_number, reason="x", actor=requester,
        channel="qa",
    )  # fmt: skip
    with pytest.raises(DomainError, match="service account .* cannot reject"):
        services.change_request_reject(change=other, reviewer=bot, comment="no")
    services.change_request_approve(change=change, reviewer=reviewer)
    assert services.change_request_apply(change=change, actor=bot).version.number == agent.latest_version_number


def test_the_old_as_impersonation_is_refused(filed, requester, reviewer):
    alices = token_secret_for(requester)  # rita filed it; she tries to approve it as victor
    code, _out, err = run("change", "approve", str(filed.pk), "--as", "victor", secret=alices)
    assert code == 1 and "--as victor does not match the token's user rita" in err
    code, _out, err = run("change", "approve", str(filed.pk), "--as", "victor", secret=None)
    assert code == 1 and "needs victor's own token" in err
    code, _out, err = run("change", "approve", str(filed.pk), secret=None)
    assert code == 1 and "No token" in err
    code, _out, err = run("change", "approve", str(filed.pk), secret=alices)
    assert code == 1 and "four-eyes" in err
    assert ChangeRequest.objects.get(pk=filed.pk).status == ChangeRequest.Status.PENDING
    read_only = token_secret_for(reviewer, read_only=True)
    code, _out, err = run("change", "approve", str(filed.pk), secret=read_only)
    assert code == 1 and "read-only" in err
    code, _out, err = run("change", "approve", str(filed.pk), "--as", "victor", secret=token_secret_for(reviewer))
    assert code == 0, err
    assert ChangeRequest.objects.get(pk=filed.pk).status == ChangeRequest.Status.APPROVED


def test_user_add_after_the_bootstrap_needs_an_admins_token(db, requester):
    code, _out, err = run("user", "add", "ann", "--role", "requester", secret=None)
    assert code == 1 and "promptctl has no admin yet: add one first" in err  # not "already has an admin"
    code, out, err = run("--json", "user", "add", "root", "--role", "admin", "--token-name", "first", secret=None)
    assert code == 0, err  # the bootstrap: no superuser yet
    root_secret = json.loads(out)["token"]["secret"]
    code, _out, err = run("user", "add", "mallory", "--role", "admin", secret=None)
    assert code == 1 and "set PROMPTCTL_TOKEN to an admin" in err
    code, _out, err = run("user", "add", "mallory", "--role", "admin", secret=token_secret_for(requester))
    assert code == 1 and "needs the auth.add_user permission" in err
    code, out, err = run("--json", "user", "add", "ci", "--role", "bot", "--token-name", "ci", secret=root_secret)
    assert code == 0, err
    assert json.loads(out)["token"]["user"] == "ci"
    assert AuditEvent.objects.filter(verb="user.create", object_repr="ci").get().actor_username == "root"


def test_events_name_their_token_and_the_chain_verifies_with_and_without(filed, reviewer):
    without = AuditEvent.objects.order_by("-sequence").first()
    assert without.token_ref == "" and "token_ref" not in event_payload(without)
    secret = token_secret_for(reviewer)
    assert run("change", "approve", str(filed.pk), secret=secret)[0] == 0
    token = PersonalToken.objects.get(user=reviewer)
    approval = AuditEvent.objects.filter(verb="change.approved").get()
    assert approval.token_ref == f"{token.pk}:{token.prefix}" and approval.actor_id == reviewer.pk
    assert event_payload(approval)["token_ref"] == approval.token_ref
    verification = audit_verify()
    assert verification.ok, verification.problem
    code, _out, err = run("audit", "verify", secret=None)  # an operator command: no token
    assert code == 0, err


def test_api_auth_refuses_writes_with_a_read_only_token_and_never_leaks_its_binding(requester):
    auth, factory = PersonalTokenAuth(), RequestFactory()
    read_only = token_secret_for(requester, read_only=True)
    with pytest.raises(HttpError) as refused:
        auth.authenticate(factory.post("/api/v1/changes"), read_only)
    assert refused.value.status_code == 403 and "read-only" in refused.value.message
    with pytest.raises(HttpError) as bad:
        auth.authenticate(factory.get("/api/v1/me"), "pctlu_nonsense")
    assert bad.value.status_code == 401 and "not known" in bad.value.message

    request = factory.get("/api/v1/me")
    with token_bind():  # the scope RequestIdMiddleware opens for each request
        principal = auth.authenticate(request, read_only)
        assert token_current() == principal.ref and request.user == requester
    assert token_current() == ""
    request.auth = principal
    with acting(request) as acting_as:
        assert acting_as.user == requester and token_current() == principal.ref
    assert token_current() == ""


def test_the_token_pages_show_only_your_own_and_never_a_secret(client, requester, reviewer):
    # Creating and revoking are clicked in a real browser (the browser tests below).
    mine = services.token_create(user=requester, actor=requester, name="laptop")
    theirs = services.token_create(user=reviewer, actor=reviewer, name="victors")
    client.force_login(requester)
    listing = client.get("/admin/promptctl/personaltoken/").content.decode()
    assert "laptop" in listing and "victors" not in listing and mine.secret not in listing
    assert client.get(f"/admin/promptctl/personaltoken/{theirs.token.pk}/change/").status_code in (302, 403)
    form = client.get("/admin/promptctl/personaltoken/add/").content.decode()
    assert 'name="owner"' not in form  # only admins may pick a bot


def test_a_forged_revoke_of_someone_elses_token_or_a_forged_owner_changes_nothing(client, requester, reviewer, bot):
    """Posts on purpose: rita's list has no checkbox for victor's token, ada's owner list offers no reviewer."""
    mine = services.token_create(user=requester, actor=requester, name="laptop")
    theirs = services.token_create(user=reviewer, actor=reviewer, name="victors")
    client.force_login(requester)
    client.post(
        "/admin/promptctl/personaltoken/",
        {"action": "revoke_selected", "_selected_action": [mine.token.pk, theirs.token.pk]},
    )
    assert PersonalToken.objects.get(pk=mine.token.pk).revoked_at is not None
    assert PersonalToken.objects.get(pk=theirs.token.pk).revoked_at is None  # not in rita's list at all

    admin = services.user_create(username="ada", role="admin", password=PASSWORD)
    client.force_login(admin)
    page = client.post("/admin/promptctl/personaltoken/add/", {"name": "ci", "owner": reviewer.pk})
    assert page.status_code == 200 and "Select a valid choice" in page.content.decode()
    assert not PersonalToken.objects.filter(name="ci").exists()  # not a choice: refused


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_in_a_browser_rita_makes_a_token_uses_it_once_and_revokes_it(browser_page):
    from tests.browser_support import admin_login

    services.user_create(username="rita", role="requester", password=PASSWORD)
    page = browser_page()
    admin_login(page, username="rita", password=PASSWORD)
    page.goto("/admin/promptctl/personaltoken/")
    page.click(".object-tools a.addlink")
    page.wait_for_url("**/admin/promptctl/personaltoken/add/")
    assert page.locator("#id_owner").count() == 0  # only admins may pick a bot
    page.fill("#id_name", "laptop")
    page.fill("#id_expires_in_days", "30")
    page.click("input[type=submit][value='Create token']")
    secret = page.inner_text("#personal-token-secret").strip()
    token = PersonalToken.objects.get(name="laptop")
    assert secret.startswith("pctlu_") and secret.startswith(token.prefix)
    assert token.user.username == "rita" and "It acts as rita" in page.inner_text("#content")
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    assert services.token_authenticate(secret=secret).user == token.user
    assert run("token", "list", secret=secret)[0] == 0

    page.goto("/admin/promptctl/personaltoken/")
    assert secret not in page.content()
    page.check("input[name=_selected_action]")
    page.select_option("select[name=action]", "revoke_selected")
    page.click("button[name=index]")
    assert "Revoked laptop" in page.inner_text(".messagelist")
    code, _out, err = run("token", "list", secret=secret)
    assert code == 1 and "was revoked on" in err


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_in_a_browser_an_admin_makes_a_token_for_a_bot_shown_once(browser_page, bot, reviewer):
    from tests.browser_support import admin_login

    services.user_create(username="ada", role="admin", password=PASSWORD)
    page = browser_page()
    admin_login(page, username="ada", password=PASSWORD)
    page.goto("/admin/promptctl/personaltoken/")
    page.click(".object-tools a.addlink")
    page.wait_for_url("**/admin/promptctl/personaltoken/add/")
    # The owner list offers "me" and the service accounts, never another person.
    owners = page.locator("#id_owner option").all_inner_texts()
    assert "ci-bot" in owners and reviewer.username not in owners
    page.fill("#id_name", "ci")
    page.select_option("#id_owner", label="ci-bot")
    page.click("input[type=submit][value='Create token']")
    secret = page.inner_text("#personal-token-secret").strip()
    token = PersonalToken.objects.get(name="ci")
    assert token.user == bot and secret.startswith(token.prefix)
    assert "It acts as ci-bot" in page.inner_text("#content")
    # Shown once: the list shows the prefix, never the secret.
    page.click("text=Back to the personal tokens")
    page.wait_for_url("**/admin/promptctl/personaltoken/")
    assert secret not in page.content() and token.prefix in page.content()
