"""Versions as code: an agent's whole configuration in one reviewable TOML file.

The file holds what makes a version: the system prompt (inline as ``system``,
or ``system_file``, a path relative to the file), ``model``, ``tools``,
``mcp_servers``, ``skills``, ``multiagent``, ``execution_identity``,
``description`` and ``metadata``. It is the *whole* configuration: a field
left out means "none" (no tools, no description), so a repository's file is
the source of truth and not a patch on whatever the server has. The agent's
name is not in it (the CLI names the agent).

The rules, and why:

- TOML, read with the standard library's ``tomllib``: the stdlib-only client
  (``promptctl_client``) parses the file on the person's machine with no
  dependency, and TOML has no implicit typing (``no`` stays a string) and no
  null. Files are written with ``tomli-w`` (``agent export``).
- Checked before any call, against the installed SDK's own parameter types
  (the SDK's TypedDicts ``agents.update`` takes, named by ``gateway.agent_config_param_types``), with
  unknown keys refused at every depth, the key named: a misspelt key would
  otherwise be dropped silently and make a version nobody asked for.
- promptctl's write marker (``managed_agents.agents.WRITE_MARKER``) is
  bookkeeping: it never appears in an exported file, and a file may not set it.
- The model may be a bare id (``model = "claude-sonnet-4-6"``) or a table
  (``id``, ``effort``, ``speed``, ``inference_geo``). As in the API, a table
  without ``effort`` keeps the current effort, and a bare id changes only the
  id; exports write the table whenever more than the id is set.
"""

from __future__ import annotations

import difflib
import tomllib
import typing
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import ConfigDict, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

from managed_agents import confighash, gateway, validation
from promptctl.errors import DomainError, Fix
from promptctl.inputs import text_file_read

FILE_FIELDS = (
    "description",
    "model",
    "system",
    "system_file",
    "metadata",
    "tools",
    "mcp_servers",
    "skills",
    "multiagent",
    "execution_identity",
)
LIST_FIELDS = ("tools", "mcp_servers", "skills")
# The fields compared and sent, in the order a diff lists them.
CONFIG_FIELDS = (
    "system",
    "model",
    "description",
    "metadata",
    "tools",
    "mcp_servers",
    "skills",
    "multiagent",
    "execution_identity",
)

_FIX = Fix(
    cli="Fix the file and run the command again (`promptctl agent export --agent NAME` writes a valid one).",
    web="Fix the file and send it again (`promptctl agent export` writes a valid one).",
)


@dataclass(frozen=True)
class AgentConfig:
    """One whole agent configuration, checked: what a version is made from, or what an export writes."""

    system: str
    model: str | dict[str, Any]
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    tools: list[dict[str, Any]] = field(default_factory=list)
    mcp_servers: list[dict[str, Any]] = field(default_factory=list)
    skills: list[dict[str, Any]] = field(default_factory=list)
    multiagent: dict[str, Any] | None = None
    execution_identity: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON the API takes (the system prompt inline, empty fields left out)."""
        data: dict[str, Any] = {"system": self.system, "model": self.model}
        if self.description:
            data["description"] = self.description
        for name in ("metadata", "tools", "mcp_servers", "skills", "multiagent", "execution_identity"):
            value = getattr(self, name)
            if value:
                data[name] = value
        return data


def _refuse(message: str, *, where: str) -> DomainError:
    return DomainError(message, code="bad_config", fields=(where,), fix=_FIX)


# --- reading ---------------------------------------------------------------------------------------


def config_file_read(path: str | Path) -> AgentConfig:
    """The checked configuration in the TOML file at ``path`` (``system_file`` read relative to it)."""
    path = Path(path)
    text = text_file_read(str(path), what="agent configuration")
    return config_parse(text, base_dir=path.parent, source=str(path))


def config_parse(text: str, *, base_dir: Path | None = None, source: str = "the configuration") -> AgentConfig:
    """Parse TOML text and check it (``config_check``); ``system_file`` needs ``base_dir``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise _refuse(f"{source} is not valid TOML: {error}.", where="file") from error
    if "system_file" in data:
        if "system" in data:
            raise _refuse(
                f"{source} sets both `system` and `system_file`: keep one (the prompt inline, or a path to it).",
                where="system_file",
            )
        relative = data.pop("system_file")
        if not isinstance(relative, str) or not relative.strip() or base_dir is None:
            raise _refuse(
                f"{source}: `system_file` must be a path relative to the configuration file.", where="system_file"
            )
        data["system"] = text_file_read(str(base_dir / relative), what="system prompt")
    return config_check(data, source=source)


def config_check(data: Mapping[str, Any], *, source: str = "the configuration") -> AgentConfig:
    """Check a parsed configuration against the SDK's parameter types and promptctl's limits; refuse naming the key.

    Nothing is sent: this runs before any call, so a refused file makes no version.
    """
    if not isinstance(data, Mapping):
        raise _refuse(f"{source} must be a table of configuration fields.", where="file")
    unknown = [key for key in data if key not in FILE_FIELDS or key == "system_file"]
    if unknown:
        raise _refuse(
            f"{source} has an unknown key `{unknown[0]}`: the configuration takes {', '.join(f for f in FILE_FIELDS)}.",
            where=str(unknown[0]),
        )
    for required in ("system", "model"):
        if required not in data:
            raise _refuse(f"{source} has no `{required}`: a version needs one.", where=required)
    system = data["system"]
    if not isinstance(system, str):
        raise _refuse(f"{source}: `system` must be text.", where="system")
    model = data["model"]
    if isinstance(model, str):
        _checked(validation.model_check, model, where="model")
    else:
        _validate("model", model, _types()["model"], source=source)
        _checked(validation.model_check, model["id"], where="model.id")
    description = data.get("description")
    if description is not None and not isinstance(description, str):
        raise _refuse(f"{source}: `description` must be text.", where="description")
    metadata = data.get("metadata") or {}
    _validate("metadata", metadata, _types()["metadata"], source=source)
    if gateway.WRITE_MARKER in metadata:
        raise _refuse(
            f"{source}: metadata `{gateway.WRITE_MARKER}` is promptctl's own bookkeeping; remove it.", where="metadata"
        )
    values: dict[str, Any] = {}
    for name in LIST_FIELDS:
        items = data.get(name) or []
        if not isinstance(items, list):
            raise _refuse(f"{source}: `{name}` must be a list (`[[{name}]]` tables).", where=name)
        for index, item in enumerate(items):
            _validate(f"{name}[{index}]", item, _member_for(name, item, where=f"{name}[{index}]"), source=source)
        values[name] = [dict(item) for item in items]
    for name in ("multiagent", "execution_identity"):
        if data.get(name) is not None:
            _validate(name, data[name], _member_for(name, data[name], where=name), source=source)
    _checked(validation.system_check, system, where="system")
    _checked(lambda: validation.agent_config_check(description=description), where="description")
    _checked(lambda: validation.agent_config_check(metadata=metadata), where="metadata")
    problem = validation.storable_problem(model="", system="", config=dict(data))
    if problem:
        raise _refuse(f"{source}: {problem.removeprefix('its ')}: remove it.", where="config")
    names = [server.get("name") for server in values["mcp_servers"]]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise _refuse(
            f"{source}: MCP server names must be unique; `{duplicates[0]}` appears twice.", where="mcp_servers"
        )
    return AgentConfig(
        system=system,
        model=model if isinstance(model, str) else dict(model),
        description=description or None,
        metadata=dict(metadata),
        multiagent=data.get("multiagent"),
        execution_identity=data.get("execution_identity"),
        **values,
    )


def _checked(check: Any, *args: Any, where: str) -> None:
    try:
        check(*args)
    except DomainError as error:
        raise _refuse(error.message, where=where) from error


@cache
def _types() -> dict[str, Any]:
    """Type adapters over the SDK's parameter TypedDicts, unknown keys forbidden at every depth."""
    return gateway.agent_config_param_types()


def _literal_values(member: Any, key: str) -> tuple[Any, ...]:
    hints = typing.get_type_hints(member, include_extras=False)
    annotation = hints.get(key)
    while typing.get_origin(annotation) in (typing.Required, typing.NotRequired):
        annotation = typing.get_args(annotation)[0]
    return typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else ()


def _member_for(name: str, item: Any, *, where: str) -> Any:
    """The one SDK type of a union that ``item``'s ``type`` names, so a refusal speaks of that type only."""
    declared = _types()[name]
    members = typing.get_args(declared) if typing.get_origin(declared) is typing.Union else (declared,)
    if not isinstance(item, Mapping):
        return declared
    kinds = {value: member for member in members for value in _literal_values(member, "type")}
    if item.get("type") not in kinds:
        raise _refuse(
            f"{where}.type is {item.get('type')!r}; the installed SDK takes {', '.join(repr(kind) for kind in kinds)}.",
            where=f"{where}.type",
        )
    return kinds[item["type"]]


@cache
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    @with_config(ConfigDict(extra="forbid", strict=True))
    class Wrapper(TypedDict):
        value: annotation

    with warnings.catch_warnings():  # a JSON-schema param allows extra keys by design: pydantic says so, rightly
        warnings.simplefilter("ignore")
        return TypeAdapter(Wrapper)


def _validate(where: str, value: Any, annotation: Any, *, source: str) -> None:
    try:
        checked = _adapter(annotation).validate_python({"value": value})
        _consume(checked["value"], ())
    except ValidationError as error:
        raise _refuse(f"{source}: {_problem(where, error)}", where=where) from error
    except _LazyError as lazy:
        raise _refuse(f"{source}: {_problem(where, lazy.error, lazy.prefix)}", where=where) from lazy.error


class _LazyError(Exception):
    def __init__(self, error: ValidationError, prefix: tuple[Any, ...]) -> None:
        self.error, self.prefix = error, prefix


def _consume(value: Any, path: tuple[Any, ...]) -> None:
    """Validate the SDK's ``Iterable[...]`` fields too: pydantic checks those lazily, as they are read."""
    if isinstance(value, Iterator):  # pydantic's lazy ValidatorIterator
        try:
            items = list(value)
        except ValidationError as error:
            raise _LazyError(error, path) from error
        for index, item in enumerate(items):
            _consume(item, (*path, index))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _consume(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _consume(item, (*path, index))


def _is_branch(segment: Any) -> bool:
    """A union member pydantic names in a location (``BetaManagedAgents...``, ``literal[...]``, ``str``)."""
    return isinstance(segment, str) and (segment.startswith(("Beta", "literal[", "dict[", "list[")) or segment == "str")


def _path(where: str, loc: tuple[Any, ...]) -> str:
    text = where
    for segment in loc:
        if _is_branch(segment):
            continue
        text += f"[{segment}]" if isinstance(segment, int) else f".{segment}"
    return text


def _problem(where: str, error: ValidationError, prefix: tuple[Any, ...] = ()) -> str:
    """The first real problem, in words: the union member a ``type``/``name`` literal rules out is not reported."""
    errors: list[dict[str, Any]] = [
        {**e, "loc": (*prefix, *[s for s in e["loc"] if s != "value"])} for e in error.errors()
    ]
    ruled_out = {
        e["loc"][:-1]
        for e in errors
        if e["type"] == "literal_error"
        and len(e["loc"]) >= 2
        and _is_branch(e["loc"][-2])
        and e["loc"][-1] in ("type", "name")
    }
    kept = [e for e in errors if not any(e["loc"][: len(branch)] == branch for branch in ruled_out)] or errors
    kept.sort(key=lambda e: e["type"] != "extra_forbidden")  # a misspelt key is the cause; its "missing" twin follows
    first = kept[0]
    path = _path(where, first["loc"])
    if first["type"] == "extra_forbidden":
        key = path.rsplit(".", 1)[-1]
        missing = [str(e["loc"][-1]) for e in kept if e["type"] == "missing" and e["loc"][:-1] == first["loc"][:-1]]
        close = difflib.get_close_matches(key, missing, n=1)
        hint = f" (did you mean `{close[0]}`, which is missing?)" if close else ""
        return f"unknown key `{key}` in {path.rsplit('.', 1)[0]}{hint}: the SDK's parameter type has no such key."
    if first["type"] == "missing":
        return f"{path} is missing: the SDK requires it."
    expected = sorted({e["ctx"]["expected"] for e in kept if e["type"] == "literal_error" and "ctx" in e})
    if expected and first["type"] == "literal_error":
        return f"{path} is {first['input']!r}; it must be one of {', '.join(expected)}."
    return f"{path}: {first['msg']} (got {first['input']!r})."


# --- comparing with a version ----------------------------------------------------------------------


def config_of_version(config: Mapping[str, Any]) -> dict[str, Any]:
    """A stored version's configuration in the file's terms (write marker out, defaults and nulls out)."""
    plain = gateway.config_without_marker(dict(config))
    canonical = confighash.config_canonical(plain)
    model = dict(canonical["model"])
    if isinstance(model.get("effort"), dict) and set(model["effort"]) == {"type"}:
        model["effort"] = model["effort"]["type"]
    out: dict[str, Any] = {
        "system": canonical["system"],
        "model": model["id"] if set(model) == {"id"} else model,
        "description": plain.get("description") or None,
        "metadata": dict(plain.get("metadata") or {}),
    }
    for name in LIST_FIELDS:
        out[name] = canonical[name]
    for name in ("multiagent", "execution_identity"):
        out[name] = canonical.get(name)
    return out


def _model_canonical(model: Any, *, current: Any) -> dict[str, Any]:
    """A file's model as the server would hold it after an update: a bare id, or a table without effort, keeps the effort."""
    current_model = confighash.config_canonical({"model": current})["model"]
    proposed = confighash.config_canonical({"model": model})["model"]
    if isinstance(model, str):
        return {**current_model, "id": proposed["id"]}
    if "effort" not in proposed and "effort" in current_model:
        proposed["effort"] = current_model["effort"]
    return proposed


def config_changes(*, current: Mapping[str, Any], proposed: AgentConfig) -> dict[str, Any]:
    """The update that makes ``current`` (a stored version's config) into ``proposed``: changed fields only.

    Behaviour fields are compared in the configuration hash's canonical form
    (``managed_agents.confighash``), labels as they are, the write marker never.
    ``metadata`` is a patch, as the API takes it: changed keys with their new
    value, removed keys as ``None``. An empty result means the file changes nothing.
    """
    plain = gateway.config_without_marker(dict(current))
    now = confighash.config_canonical(plain)
    wanted = confighash.config_canonical(
        {
            "system": proposed.system,
            "tools": proposed.tools,
            "mcp_servers": proposed.mcp_servers,
            "skills": proposed.skills,
            "multiagent": proposed.multiagent,
            "execution_identity": proposed.execution_identity,
        }
    )
    changes: dict[str, Any] = {}
    if wanted["system"] != now["system"]:
        changes["system"] = proposed.system
    if _model_canonical(proposed.model, current=plain.get("model")) != now["model"]:
        changes["model"] = proposed.model
    if (proposed.description or None) != (plain.get("description") or None):
        changes["description"] = proposed.description or None
    old_metadata = dict(plain.get("metadata") or {})
    patch: dict[str, str | None] = {k: v for k, v in proposed.metadata.items() if old_metadata.get(k) != v}
    patch.update({key: None for key in old_metadata if key not in proposed.metadata})
    if patch:
        changes["metadata"] = patch
    for name in LIST_FIELDS:
        if wanted[name] != now[name]:
            changes[name] = getattr(proposed, name)
    for name in ("multiagent", "execution_identity"):
        if wanted.get(name) != now.get(name):
            changes[name] = getattr(proposed, name)
    return changes


# --- writing ---------------------------------------------------------------------------------------


def config_render(config: Mapping[str, Any], *, agent_name: str, version_number: int) -> str:
    """The TOML file for a stored version's configuration: what ``version create --config`` takes back unchanged."""
    plain = config_of_version(config)
    document: dict[str, Any] = {}
    if plain["description"]:
        document["description"] = plain["description"]
    document["model"] = plain["model"]
    document["system"] = plain["system"]
    if plain["metadata"]:
        document["metadata"] = plain["metadata"]
    for name in (*LIST_FIELDS, "multiagent", "execution_identity"):
        if plain[name]:
            document[name] = plain[name]
    header = (
        f"# Agent {agent_name}, version {version_number}: its whole configuration (promptctl agent export).\n"
        f"# Edit, then: promptctl version create --agent {agent_name} --config THIS_FILE\n"
        "# A field left out means none (no tools, no description); the model's effort is kept unless set.\n\n"
    )
    return header + tomli_w.dumps(document, multiline_strings=True)
