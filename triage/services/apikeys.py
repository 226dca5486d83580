"""API keys: issuing and revoking them, and authenticating the key behind a request.

Keys are stored as SHA-256 hashes of 256-bit random secrets; the secret is
returned once, by ``api_key_create``, and never again. A revoked key is
refused on its next request: every request reads the key row. Issuing and
revoking are audited in the same transaction (name, prefix and scope; never
the secret or its hash).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from promptctl.audit import audit_record
from promptctl.errors import DomainError, Fix
from promptctl.models import Agent
from promptctl.records import saved_by
from triage.models import ApiKey, ApiKeyUsage
from triage.services.common import ApiKeyRefused, _require

KEY_PREFIX = "pctl_"
SHOWN_PREFIX_LENGTH = 12
USAGE_RESOLUTION = timedelta(minutes=1)  # last-used time is recorded to within this
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")


# --- API keys ---------------------------------------------------------------------


def _key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    """A new key and its secret; the secret exists only here and is never stored."""

    key: ApiKey
    secret: str


def api_key_create(*, name: str, actor: Any, agent_names: Sequence[str] = (), all_agents: bool = False) -> IssuedKey:
    """Issue a key for the agents named (or for all agents); the secret is returned once and stored only hashed."""
    _require(actor, "add_apikey", "create API keys")
    name = (name or "").strip()
    if not _KEY_NAME.match(name):
        raise DomainError(
            f"API key name {name!r} is not allowed: use letters, digits, dashes and underscores "
            "(e.g. helpdesk-prod), at most 100 characters."
        )
    names = sorted({agent_name.strip() for agent_name in agent_names if agent_name and agent_name.strip()})
    if all_agents and names:
        raise DomainError(
            "A key is either for all agents or for the agents named, not both.",
            code="api_key_scope_both",
            fields=("agents", "all_agents"),
            fix=Fix(cli="Drop --agent or --all-agents.", web="Clear the agents picked, or untick All agents."),
        )
    if not all_agents and not names:
        raise DomainError(
            "",
            code="api_key_scope_missing",
            fields=("agents", "all_agents"),
            fix=Fix(
                cli="Say which agents the key may call (--agent NAME, repeatable), or that it may call all agents "
                "(--all-agents).",
                web="Say which agents the key may call (pick them under Agents), or tick All agents.",
            ),
        )
    agents = list(Agent.objects.filter(name__in=names))
    missing = sorted(set(names) - {agent.name for agent in agents})
    if missing:
        raise DomainError(
            f"No agent named {', '.join(map(repr, missing))}.",
            code="agent_not_found",
            fields=("agents",),
            fix=Fix(cli="`promptctl agent list` shows the agents.", web="Agents lists them."),
        )
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            key = saved_by(
                ApiKey(
                    name=name,
                    prefix=secret[:SHOWN_PREFIX_LENGTH],
                    key_hash=_key_hash(secret),
                    all_agents=all_agents,
                    created_by=actor,
                ),
                actor,
            )
            if agents:
                key.agents.set(agents)
            ApiKeyUsage.objects.create(key=key)
            audit_record(actor=actor, verb="apikey.create", target=key, after=_key_snapshot(key, names))
    except IntegrityError as error:
        raise DomainError(
            f"An API key named {name!r} already exists: pick another name or revoke that one first."
        ) from error
    return IssuedKey(key=key, secret=secret)


def api_key_revoke(*, key: ApiKey, actor: Any) -> ApiKey:
    """Revoke ``key``: its next request is refused (every request reads the key row)."""
    _require(actor, "change_apikey", "revoke API keys")
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        if key.revoked_at is not None:
            raise DomainError(f"API key {key.name!r} was already revoked on {key.revoked_at:%Y-%m-%d %H:%M:%S} UTC.")
        before = _key_snapshot(key, sorted(key.agents.values_list("name", flat=True)))
        key.revoked_at = timezone.now()
        key.revoked_by = actor
        saved_by(key, actor)
        audit_record(actor=actor, verb="apikey.revoke", target=key, before=before, after={"revoked": True})
    return key


def _key_snapshot(key: ApiKey, agent_names: Sequence[str]) -> dict[str, Any]:
    """What a key may do, for the audit trail (never its secret or hash)."""
    return {"name": key.name, "prefix": key.prefix, "all_agents": key.all_agents, "agents": list(agent_names)}


@dataclass(frozen=True)
class Principal:
    """The caller behind a request: which key, and which agents it may call."""

    key_id: int
    name: str
    all_agents: bool
    agent_ids: frozenset[int]

    def may_call(self, agent_id: int) -> bool:
        return self.all_agents or agent_id in self.agent_ids


_last_touched: dict[str, float] = {}


def api_key_token_check(token: str) -> str:
    """``token`` if it has the shape of a promptctl key (no database read); refused otherwise."""
    if not token or len(token) > 200 or not token.startswith(KEY_PREFIX):
        raise ApiKeyRefused(
            "This API key is not valid: send the key promptctl issued, as `Authorization: Bearer pctl_...`.",
            code="api_key_unreadable",
            fix=Fix(
                cli="Keys are created with `promptctl apikey create` or in the admin.",
                web="Keys are created under API keys.",
                link=("admin:triage_apikey_add", ()),
            ),
        )
    return token


def api_key_authenticate(*, token: str) -> Principal:
    """The key ``token`` names, read from the database now (so a revocation applies to the next request)."""
    api_key_token_check(token)
    key_hash = _key_hash(token)
    # key_hash is unique: a slice, not first(), which would add an ORDER BY to compile on every call.
    row = next(
        iter(ApiKey.objects.filter(key_hash=key_hash).values("id", "name", "all_agents", "revoked_at")[:1]), None
    )
    if row is None:
        raise ApiKeyRefused(
            "This API key is not known to promptctl (it may be mistyped, or from another installation). "
            "Ask the promptctl owners for a key."
        )
    if row["revoked_at"] is not None:
        raise ApiKeyRefused(
            f"API key {row['name']!r} was revoked on {row['revoked_at']:%Y-%m-%d %H:%M:%S} UTC and can no longer "
            "be used. Ask the promptctl owners for a new key."
        )
    agent_ids: frozenset[int] = frozenset()
    if not row["all_agents"]:
        agent_ids = frozenset(
            ApiKey.agents.through.objects.filter(apikey_id=row["id"]).values_list("agent_id", flat=True)
        )
    _api_key_touch(row["id"], key_hash)
    return Principal(key_id=row["id"], name=row["name"], all_agents=row["all_agents"], agent_ids=agent_ids)


def _api_key_touch(key_id: int, key_hash: str) -> None:
    """Record the key's last use, at most once a minute per process (a write per request would contend).

    Remembered by the key's hash, which no other key ever has (a row id can be reused after a restore).
    """
    now_monotonic = time.monotonic()
    if now_monotonic - _last_touched.get(key_hash, -1e9) < USAGE_RESOLUTION.total_seconds():
        return
    _last_touched[key_hash] = now_monotonic
    now = timezone.now()
    ApiKeyUsage.objects.filter(key_id=key_id).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - USAGE_RESOLUTION)
    ).update(last_used_at=now)
