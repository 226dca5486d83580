"""What an agent configuration must be before it is sent to Managed Agents, and whether a server version is storable.

Checked locally, before any remote call, so refused input never leaves a
remote version or agent behind (a refusal after the server made one would
need reconciling). The limits:

- the API's own, from the SDK's parameter documentation
  (``anthropic.types.beta.agent_create_params``): metadata at most 16 pairs,
  keys up to 64 characters, values up to 512;
- promptctl's database: the model id is stored in ``CharField(max_length=200)``
  (``promptctl.models.Agent.model`` and ``AgentVersion.model``;
  ``tests/managed_agents/test_validation.py`` keeps the two equal), the name
  in a 100-character slug; PostgreSQL stores no NUL in text or JSON, and no
  text can hold a lone surrogate (it has no UTF-8 encoding);
- promptctl's cap on a system prompt, ``PROMPTCTL_MAX_PROMPT_BYTES`` (UTF-8 bytes).

Every refusal is a ``GatewayError`` (a ``DomainError``) of one line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from managed_agents.client import GatewayError

MODEL_MAX_LENGTH = 200
NAME_MAX_LENGTH = 100
DESCRIPTION_MAX_LENGTH = 2048
METADATA_MAX_PAIRS = 16
METADATA_KEY_MAX_LENGTH = 64
METADATA_VALUE_MAX_LENGTH = 512
DEFAULT_MAX_PROMPT_BYTES = 100_000

_SURROGATE = re.compile("[\ud800-\udfff]")
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored (``"holds a NUL character at character 12"``), or None."""
    position = text.find("\x00")
    if position >= 0:
        return f"holds a NUL character (\\u0000) at character {position}, which the database cannot store"
    match = _SURROGATE.search(text)
    if match:
        return (
            f"holds a lone surrogate (\\u{ord(match.group()):04x}) at character {match.start()}, "
            "which is not valid Unicode"
        )
    return None


def _strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string in a JSON-like value, keys included, with where it is (``config.metadata.team``)."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, Mapping):
        found = []
        for key, item in value.items():
            found += _strings(key, f"{path}.{key!s}" if path else str(key))
            found += _strings(item, f"{path}.{key!s}" if path else str(key))
        return found
    if isinstance(value, list | tuple):
        return [pair for index, item in enumerate(value) for pair in _strings(item, f"{path}[{index}]")]
    return []


def prompt_max_bytes() -> int:
    return int(getattr(settings, "PROMPTCTL_MAX_PROMPT_BYTES", DEFAULT_MAX_PROMPT_BYTES))


def system_check(system: str) -> None:
    """Refuse a system prompt that is empty, over the cap, or not storable."""
    if not system.strip():
        raise GatewayError("The system prompt is empty: give the agent's instructions in the system file.")
    size, cap = len(system.encode("utf-8", "surrogatepass")), prompt_max_bytes()
    if size > cap:
        raise GatewayError(
            f"The system prompt is {size:,} bytes, over the {cap:,}-byte cap: shorten it, or raise "
            "PROMPTCTL_MAX_PROMPT_BYTES if it really must be that long."
        )
    problem = text_problem(system)
    if problem:
        raise GatewayError(f"The system prompt {problem}: remove it and try again.")


def model_check(model: str) -> None:
    """Refuse a model id that promptctl could not store or that cannot be one (spaces, control characters)."""
    if len(model) > MODEL_MAX_LENGTH:
        raise GatewayError(
            f"The model id is {len(model)} characters; promptctl stores at most {MODEL_MAX_LENGTH}: "
            "give a model id such as claude-sonnet-4-6."
        )
    if not _MODEL_ID.match(model):
        raise GatewayError(
            f"The model id {model[:60]!r} is not a model id (letters, digits and . _ : @ / - only): "
            "give one such as claude-sonnet-4-6."
        )


def agent_config_check(
    *,
    name: str | None = None,
    model: str | None = None,
    system: str | None = None,
    description: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Refuse, before any remote call, a configuration the API or promptctl's database would not take."""
    if name is not None:
        problem = text_problem(name)
        if not name.strip() or len(name) > NAME_MAX_LENGTH or problem:
            raise GatewayError(
                f"The agent name {name[:60]!r} is not allowed ({problem or f'1 to {NAME_MAX_LENGTH} characters'}): "
                "use lowercase letters, digits and dashes (e.g. ticket-triage)."
            )
    if model is not None:
        model_check(model)
    if system is not None:
        system_check(system)
    if description is not None:
        problem = text_problem(description)
        if len(description) > DESCRIPTION_MAX_LENGTH or problem:
            raise GatewayError(
                f"The description {problem or f'is over {DESCRIPTION_MAX_LENGTH} characters'}: shorten or fix it."
            )
    if metadata is not None:
        _metadata_check(metadata)


def _metadata_check(metadata: Mapping[str, str]) -> None:
    if len(metadata) > METADATA_MAX_PAIRS:
        raise GatewayError(
            f"The metadata holds {len(metadata)} pairs; Managed Agents takes at most {METADATA_MAX_PAIRS}."
        )
    for key, value in metadata.items():
        if len(key) > METADATA_KEY_MAX_LENGTH or len(value) > METADATA_VALUE_MAX_LENGTH:
            raise GatewayError(
                f"Metadata {key[:40]!r} is too long: keys take up to {METADATA_KEY_MAX_LENGTH} characters, "
                f"values up to {METADATA_VALUE_MAX_LENGTH}."
            )
        problem = text_problem(key) or text_problem(value)
        if problem:
            raise GatewayError(f"Metadata {key[:40]!r} {problem}: remove it and try again.")


def storable_problem(*, model: str, system: str, config: Mapping[str, Any]) -> str | None:
    """Why a version the server holds cannot be recorded by promptctl as it is (None when it can).

    The same rules on every database, so SQLite in development refuses what
    PostgreSQL in production would.
    """
    if len(model) > MODEL_MAX_LENGTH:
        return f"its model id is {len(model)} characters (promptctl stores at most {MODEL_MAX_LENGTH})"
    for where, text in [("system prompt", system), ("model id", model)] + [
        (f"config field {path}", text) for path, text in _strings(config, "")
    ]:
        problem = text_problem(text)
        if problem:
            return f"its {where} {problem}"
    return None
