"""An agent's tools, MCP servers, skills and model, checked against the SDK's parameter types and resolved to its response types.

The params (``agent_create_params.Tool``, ``BetaManagedAgentsURLMCPServerParams``,
``BetaManagedAgentsSkillParams``, ``BetaManagedAgentsModelConfigParams``) leave much
optional; the response types (``BetaManagedAgentsAgent``) require it resolved. So, as
the API does, a stored configuration has every default filled in:

- ``agent_toolset_20260401``: ``default_config`` becomes ``{"enabled", "permission_policy"}``
  (enabled defaults to true, as the params document; the policy to ``always_allow``);
  each per-tool override in ``configs`` gets ``type`` = its name and inherits ``enabled`` and
  ``permission_policy`` from the default it does not set. Tools not overridden are not
  listed (the emulator does not invent the built-in tool list).
- ``mcp_toolset``: the same, with ``always_ask`` as the default policy for MCP tools.
- ``custom``: ``input_schema`` keeps ``type: object`` and its ``properties``/``required``.
- skills: an omitted ``version`` becomes ``"latest"`` ("defaults to latest if omitted").

Malformed input is refused with 400 ``invalid_request_error`` whose message names the
path (``tools[1].input_schema.type``), what was expected, and the accepted values.
"""

from __future__ import annotations

import re
from typing import Any

from . import errors

MAX_TOOLS = 256
MAX_MCP_SERVERS = 20
AGENT_TOOL_NAMES = ("bash", "edit", "read", "write", "glob", "grep", "web_fetch", "web_search")
PERMISSION_POLICIES = ("always_allow", "always_ask", "auto")
EFFORT_LEVELS = ("low", "medium", "high", "xhigh", "max")
SPEEDS = ("standard", "fast")
SKILL_TYPES = ("anthropic", "custom")
_CUSTOM_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_WEB_TOOL_FIELDS = {
    "web_fetch": ("allowed_domains", "blocked_domains", "max_content_tokens", "url_sources"),
    "web_search": ("allowed_domains", "blocked_domains", "user_location"),
}


def _refuse(what: str, path: str, expected: str) -> errors.ApiError:
    return errors.invalid_request(f"{what}: `{path}` {expected}.")


def _object(value: Any, what: str, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _refuse(what, path, "must be an object")
    return value


def _text(value: Any, what: str, path: str, *, longest: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= longest:
        raise _refuse(what, path, f"must be a string of 1 to {longest} characters")
    return value


def _policy(value: Any, what: str, path: str, default: dict[str, str]) -> dict[str, str]:
    if value is None:
        return dict(default)
    if not isinstance(value, dict) or value.get("type") not in PERMISSION_POLICIES:
        raise _refuse(what, path, f"must be {{'type': ...}} with type one of {', '.join(PERMISSION_POLICIES)}")
    return {"type": value["type"]}


def _enabled(value: Any, what: str, path: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _refuse(what, path, "must be true, false or null")
    return value


def _default_config(raw: Any, what: str, path: str, policy: str) -> dict[str, Any]:
    config = {} if raw is None else _object(raw, what, path)
    return {
        "enabled": _enabled(config.get("enabled"), what, f"{path}.enabled", True),
        "permission_policy": _policy(
            config.get("permission_policy"), what, f"{path}.permission_policy", {"type": policy}
        ),
    }


def _list(value: Any, what: str, path: str, *, longest: int) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > longest:
        raise _refuse(what, path, f"must be an array of at most {longest} items")
    return value


def _agent_toolset(tool: dict[str, Any], what: str, path: str) -> dict[str, Any]:
    default = _default_config(tool.get("default_config"), what, f"{path}.default_config", "always_allow")
    configs, seen = [], set()
    for index, raw in enumerate(_list(tool.get("configs"), what, f"{path}.configs", longest=len(AGENT_TOOL_NAMES))):
        here = f"{path}.configs[{index}]"
        config = _object(raw, what, here)
        name = config.get("name")
        if name not in AGENT_TOOL_NAMES:
            raise _refuse(what, f"{here}.name", f"must be one of {', '.join(AGENT_TOOL_NAMES)}")
        if config.get("type") not in (None, name):
            raise _refuse(what, f"{here}.type", f"must equal its name ({name!r}) or be omitted")
        if name in seen:
            raise _refuse(what, f"{here}.name", f"repeats {name!r}; configure each built-in tool once")
        seen.add(name)
        resolved: dict[str, Any] = {
            "name": name,
            "type": name,
            "enabled": _enabled(config.get("enabled"), what, f"{here}.enabled", default["enabled"]),
            "permission_policy": _policy(
                config.get("permission_policy"), what, f"{here}.permission_policy", default["permission_policy"]
            ),
        }
        for field in _WEB_TOOL_FIELDS.get(name, ()):
            if config.get(field) is not None:
                resolved[field] = config[field]
        configs.append(resolved)
    return {"type": "agent_toolset_20260401", "configs": configs, "default_config": default}


def _mcp_toolset(tool: dict[str, Any], what: str, path: str) -> dict[str, Any]:
    server = _text(tool.get("mcp_server_name"), what, f"{path}.mcp_server_name", longest=255)
    default = _default_config(tool.get("default_config"), what, f"{path}.default_config", "always_ask")
    configs = []
    for index, raw in enumerate(_list(tool.get("configs"), what, f"{path}.configs", longest=MAX_TOOLS)):
        here = f"{path}.configs[{index}]"
        config = _object(raw, what, here)
        configs.append(
            {
                "name": _text(config.get("name"), what, f"{here}.name", longest=128),
                "enabled": _enabled(config.get("enabled"), what, f"{here}.enabled", default["enabled"]),
                "permission_policy": _policy(
                    config.get("permission_policy"), what, f"{here}.permission_policy", default["permission_policy"]
                ),
            }
        )
    return {"type": "mcp_toolset", "mcp_server_name": server, "configs": configs, "default_config": default}


def _custom_tool(tool: dict[str, Any], what: str, path: str) -> dict[str, Any]:
    name = tool.get("name")
    if not isinstance(name, str) or not _CUSTOM_TOOL_NAME.match(name):
        raise _refuse(what, f"{path}.name", "must be 1-128 letters, digits, underscores or hyphens")
    description = tool.get("description")
    if not isinstance(description, str) or not description:
        raise _refuse(what, f"{path}.description", "is required: what the tool does, shown to the agent")
    schema = _object(tool.get("input_schema"), what, f"{path}.input_schema")
    if schema.get("type") != "object":
        raise _refuse(what, f"{path}.input_schema.type", "must be 'object' (a JSON Schema object)")
    resolved_schema: dict[str, Any] = {"type": "object"}
    if schema.get("properties") is not None:
        resolved_schema["properties"] = _object(schema["properties"], what, f"{path}.input_schema.properties")
    if schema.get("required") is not None:
        required = schema["required"]
        if not isinstance(required, list) or not all(isinstance(item, str) for item in required):
            raise _refuse(what, f"{path}.input_schema.required", "must be an array of property names")
        resolved_schema["required"] = list(required)
    return {"type": "custom", "name": name, "description": description, "input_schema": resolved_schema}


def tools_resolved(value: Any, what: str) -> list[dict[str, Any]]:
    """``tools`` checked against ``agent_create_params.Tool`` and resolved to the response's shape."""
    tools = _list(value, what, "tools", longest=MAX_TOOLS)
    resolved: list[dict[str, Any]] = []
    for index, raw in enumerate(tools):
        path = f"tools[{index}]"
        tool = _object(raw, what, path)
        kind = tool.get("type")
        if kind == "agent_toolset_20260401":
            resolved.append(_agent_toolset(tool, what, path))
        elif kind == "mcp_toolset":
            resolved.append(_mcp_toolset(tool, what, path))
        elif kind == "custom":
            resolved.append(_custom_tool(tool, what, path))
        else:
            raise _refuse(what, f"{path}.type", "must be one of agent_toolset_20260401, mcp_toolset, custom")
    kinds = [tool["type"] for tool in resolved]
    if kinds.count("agent_toolset_20260401") > 1:
        raise errors.invalid_request(f"{what}: `tools` holds agent_toolset_20260401 twice; list it once.")
    for kind, key, label in (
        ("mcp_toolset", "mcp_server_name", "mcp_toolset for server"),
        ("custom", "name", "custom tool"),
    ):
        names = [tool[key] for tool in resolved if tool["type"] == kind]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise errors.invalid_request(f"{what}: `tools` has more than one {label} {duplicates[0]!r}.")
    return resolved


def mcp_servers_checked(value: Any, what: str) -> list[dict[str, Any]]:
    """``mcp_servers`` as ``BetaManagedAgentsURLMCPServerParams``: at most 20, unique names, a URL each."""
    servers = []
    for index, raw in enumerate(_list(value, what, "mcp_servers", longest=MAX_MCP_SERVERS)):
        path = f"mcp_servers[{index}]"
        server = _object(raw, what, path)
        if server.get("type") != "url":
            raise _refuse(what, f"{path}.type", "must be 'url'")
        name = _text(server.get("name"), what, f"{path}.name", longest=255)
        url = server.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise _refuse(what, f"{path}.url", "must be the server's http(s) endpoint URL")
        servers.append({"type": "url", "name": name, "url": url})
    names = [server["name"] for server in servers]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise errors.invalid_request(f"{what}: `mcp_servers` names must be unique; {duplicates[0]!r} repeats.")
    return servers


def mcp_references_checked(tools: list[dict[str, Any]], servers: list[dict[str, Any]], what: str) -> None:
    """Every server is used by an ``mcp_toolset`` and every ``mcp_toolset`` names a server, as documented."""
    server_names = {server["name"] for server in servers}
    referenced = {tool["mcp_server_name"] for tool in tools if tool["type"] == "mcp_toolset"}
    unknown = sorted(referenced - server_names)
    if unknown:
        raise errors.invalid_request(
            f"{what}: an mcp_toolset names server {unknown[0]!r}, which is not in `mcp_servers`; add the server "
            "or remove the toolset."
        )
    unused = sorted(server_names - referenced)
    if unused:
        raise errors.invalid_request(
            f"{what}: MCP server {unused[0]!r} is not referenced by any mcp_toolset in `tools`; add "
            f'{{"type": "mcp_toolset", "mcp_server_name": "{unused[0]}"}} or remove the server.'
        )


def skills_resolved(value: Any, what: str) -> list[dict[str, Any]]:
    """``skills`` as ``BetaManagedAgentsSkillParams``; an omitted version resolves to ``"latest"``."""
    skills = []
    for index, raw in enumerate(_list(value, what, "skills", longest=MAX_TOOLS)):
        path = f"skills[{index}]"
        skill = _object(raw, what, path)
        if skill.get("type") not in SKILL_TYPES:
            raise _refuse(what, f"{path}.type", f"must be one of {', '.join(SKILL_TYPES)}")
        skill_id = _text(skill.get("skill_id"), what, f"{path}.skill_id", longest=255)
        version = skill.get("version")
        if version is not None and (not isinstance(version, str) or not version):
            raise _refuse(what, f"{path}.version", "must be a version string, or omitted for the latest")
        skills.append({"type": skill["type"], "skill_id": skill_id, "version": version or "latest"})
    return skills


def model_resolved(value: Any, what: str) -> dict[str, Any]:
    """A model id string or ``model_config`` object, with ``effort`` and ``speed`` checked and defaulted."""
    if isinstance(value, str) and value:
        return {"id": value, "effort": {"type": "high"}, "speed": "standard"}
    if not isinstance(value, dict) or not isinstance(value.get("id"), str) or not value["id"]:
        raise errors.invalid_request(f"{what}: `model` is required: a model id string or an object with `id`.")
    effort = value.get("effort") or "high"
    level = effort.get("type") if isinstance(effort, dict) else effort
    if level not in EFFORT_LEVELS:
        raise _refuse(what, "model.effort", f"must be one of {', '.join(EFFORT_LEVELS)} (or {{'type': level}})")
    speed = value.get("speed") or "standard"
    if speed not in SPEEDS:
        raise _refuse(what, "model.speed", f"must be one of {', '.join(SPEEDS)}")
    geo = value.get("inference_geo")
    if geo is not None and not isinstance(geo, str):
        raise _refuse(what, "model.inference_geo", "must be a string or null")
    return {"id": value["id"], "effort": {"type": level}, "speed": speed, **({"inference_geo": geo} if geo else {})}
