"""The configuration hash: one SHA-256 over the fields that decide how an agent behaves, in one canonical form.

It is computed from the configuration as promptctl stores it (the SDK's dump of
the server's reply), so a stored version can be re-hashed at any time, and it
must not move when nothing about the agent's behaviour moved. Three things
would move a hash over the whole dump: an SDK upgrade that adds a field or
fills a default the server never sent, and a server that starts returning a
new field. So the hash covers only the fields listed in ``BEHAVIOUR_FIELDS``,
and within them treats "absent", ``null`` and the documented default as one
value (``_DEFAULTS``).

In the hash, and why:

- ``system``: the instructions; absent or ``null`` is ``""``.
- ``model``: the model id, ``effort``, ``speed`` (``standard`` is the default)
  and ``inference_geo`` (where inference runs; unset means the workspace's
  default). A model given as a bare id string is ``{"id": ...}``.
- ``tools``, ``mcp_servers``, ``skills``: what the agent can do; absent or
  ``null`` is ``[]``. Order is kept (it is the order the model sees them in).
- ``multiagent``: whom the agent can delegate to; absent or ``null`` is none.
- ``execution_identity``: the principal runs act as (what they may reach);
  ``{"type": "service_account"}`` is the default and counts as absent.

Out of the hash, and why:

- ``id``, ``type``, ``version``, ``created_at``, ``updated_at``,
  ``archived_at``: identity and bookkeeping, not behaviour.
- ``name``, ``description``, ``metadata``: labels for people and tooling; the
  model never sees them when it runs this agent.
- any field not listed above, at the top level: a field a newer SDK or server
  adds is not behaviour promptctl reviewed, and must not flag every version.

Inside the listed fields, a key whose value is ``null`` counts as absent (a
newer SDK dumps optional fields it does not know the server left out as
``null``). A new key with a non-null value inside a tool, server, skill or the
model object does change the hash: it may change what that tool does, so a
person should look (``agent sync`` names it as a mismatch).

Changing these rules changes stored hashes: it needs a migration that
recomputes ``AgentVersion.config_canonical_sha256`` from the stored config
(``promptctl/migrations/0010_config_canonical.py`` is the first).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

BEHAVIOUR_FIELDS = ("system", "model", "tools", "mcp_servers", "skills", "multiagent", "execution_identity")

_LIST_FIELDS = ("tools", "mcp_servers", "skills")

# Values that mean the same as "not set", by path. The SDK or server may send them or leave them out.
_DEFAULTS: dict[tuple[str, ...], Any] = {
    ("model", "speed"): "standard",
    ("execution_identity",): {"type": "service_account"},
}


def _without_nulls(value: Any) -> Any:
    """Null keys dropped at every depth: ``{"a": None}`` and ``{}`` are one configuration."""
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def config_canonical(config: dict[str, Any]) -> dict[str, Any]:
    """The behaviour-defining part of a stored configuration, in the one form the hash is taken over."""
    canonical: dict[str, Any] = {"system": config.get("system") or ""}
    model = config.get("model")
    if isinstance(model, str):
        model = {"id": model}
    model = _without_nulls(model) if isinstance(model, dict) else {}
    effort = model.get("effort")
    if isinstance(effort, str):
        model["effort"] = {"type": effort}
    canonical["model"] = model
    for name in _LIST_FIELDS:
        canonical[name] = _without_nulls(config.get(name) or [])
    for name in ("multiagent", "execution_identity"):
        value = _without_nulls(config.get(name))
        if value not in (None, {}):
            canonical[name] = value
    for path, default in _DEFAULTS.items():
        holder: Any = canonical
        for key in path[:-1]:
            holder = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and holder.get(path[-1]) == default:
            del holder[path[-1]]
    return canonical


def config_sha256(config: dict[str, Any]) -> str:
    """SHA-256 of ``config_canonical(config)`` as sorted, compact UTF-8 JSON."""
    text = json.dumps(config_canonical(config), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
