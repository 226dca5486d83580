"""What changed between two versions: the prompt as a text diff, every other field one row per change.

A version is its whole configuration (``promptctl.config_files``), so a diff
that showed only the prompt would hide a model upgrade or a new tool from the
reviewer. The rows compare the configurations as the file reads them (the
configuration hash's canonical form, ``managed_agents.confighash``: defaults
and nulls do not count as changes; promptctl's write marker never appears):

- ``model``: one row per setting that moved (``model`` for the id,
  ``model.effort``, ``model.speed``, ``model.inference_geo``);
- ``tools``, ``mcp_servers``, ``skills``: matched by name (a custom tool's
  ``name``, an MCP toolset's server, the built-in toolset's type, a server's
  ``name``, a skill's ``skill_id``), so each is added, removed or changed;
- ``metadata``: one row per key; ``description``, ``multiagent`` and
  ``execution_identity``: one row each.

Each row holds the old and the new value (``None`` on the side where the
item does not exist). Reads only; ``selectors.version_diff`` looks the versions up and calls ``versions_compare``.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from managed_agents import gateway
from promptctl.config_files import config_of_version

if TYPE_CHECKING:
    from promptctl.models import Agent, AgentVersion


@dataclass(frozen=True)
class FieldChange:
    """One field (or one item of a list field, or one metadata key) that differs between two versions."""

    field: str
    item: str
    change: str  # added, removed or changed
    old: Any
    new: Any

    @property
    def label(self) -> str:
        """``model``, ``model.effort``, ``tool lookup_order``, ``metadata team``: what a person reads first."""
        if not self.item:
            return self.field
        if self.field == "model":
            return f"model.{self.item}"
        singular = {"tools": "tool", "mcp_servers": "MCP server", "skills": "skill"}.get(self.field, self.field)
        return f"{singular} {self.item}"

    @property
    def old_text(self) -> str:
        return value_text(self.old)

    @property
    def new_text(self) -> str:
        return value_text(self.new)

    def as_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "item": self.item,
            "label": self.label,
            "change": self.change,
            "old": self.old,
            "new": self.new,
        }

    def line(self) -> str:
        """One line for a terminal: ``~ model: claude-sonnet-4-5 -> claude-sonnet-4-6``."""
        if self.change == "added":
            return f"+ {self.label}: {self.new_text}"
        if self.change == "removed":
            return f"- {self.label}: {self.old_text}"
        return f"~ {self.label}: {self.old_text} -> {self.new_text}"


def value_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _item_key(field_name: str, item: Any) -> str:
    if not isinstance(item, dict):
        return value_text(item)
    if field_name == "tools":
        return str(item.get("name") or item.get("mcp_server_name") or item.get("type") or "?")
    if field_name == "skills":
        return str(item.get("skill_id") or "?")
    return str(item.get("name") or "?")


def _keyed(field_name: str, items: list[Any]) -> dict[str, Any]:
    keyed: dict[str, Any] = {}
    for item in items:
        key = _item_key(field_name, item)
        while key in keyed:  # two items of one name: the second is told apart by a suffix
            key += "'"
        keyed[key] = item
    return keyed


def _pairs(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, Any, Any]]:
    """(key, change, old, new) for every key that differs, in the new order with removed keys after."""
    rows = []
    for key in [*new, *(k for k in old if k not in new)]:
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        change = "added" if key not in old else "removed" if key not in new else "changed"
        rows.append((key, change, before, after))
    return rows


def _model_dict(model: Any) -> dict[str, Any]:
    return {"id": model} if isinstance(model, str) else dict(model or {})


def config_field_changes(left_config: dict[str, Any], right_config: dict[str, Any]) -> list[FieldChange]:
    """Every field but the prompt that differs between two stored configurations, one row per change."""
    left, right = config_of_version(left_config), config_of_version(right_config)
    rows: list[FieldChange] = []
    for key, change, old, new in _pairs(_model_dict(left["model"]), _model_dict(right["model"])):
        rows.append(FieldChange("model", "" if key == "id" else key, change, old, new))
    for name in ("tools", "mcp_servers", "skills"):
        for key, change, old, new in _pairs(_keyed(name, left[name]), _keyed(name, right[name])):
            rows.append(FieldChange(name, key, change, old, new))
    for name in ("description", "multiagent", "execution_identity"):
        if left[name] != right[name]:
            change = "added" if left[name] is None else "removed" if right[name] is None else "changed"
            rows.append(FieldChange(name, "", change, left[name], right[name]))
    for key, change, old, new in _pairs(left["metadata"], right["metadata"]):
        rows.append(FieldChange("metadata", key, change, old, new))
    return rows


def _config_lines(version: AgentVersion) -> list[str]:
    config = {key: value for key, value in gateway.config_without_marker(version.config).items() if key != "system"}
    return json.dumps(config, indent=2, sort_keys=True, default=str).splitlines()


@dataclass(frozen=True)
class VersionDiff:
    """Two versions compared: unified text for terminals, aligned rows for side-by-side views, and field rows."""

    agent: Agent
    left: AgentVersion
    right: AgentVersion
    system_unified: list[str]
    config_unified: list[str]
    system_rows: list[tuple[str, str, str]] = field(default_factory=list)
    config_rows: list[tuple[str, str, str]] = field(default_factory=list)
    field_changes: list[FieldChange] = field(default_factory=list)
    summaries: tuple[dict[str, Any], dict[str, Any]] = ({}, {})  # the two versions as ``version list`` shows them

    @property
    def identical(self) -> bool:
        return not self.system_unified and not self.field_changes

    def lines(self) -> list[str]:
        """The whole diff for a terminal: the prompt's unified diff, then one line per changed field."""
        return self.system_unified + [change.line() for change in self.field_changes]

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent.name,
            "left": self.summaries[0],
            "right": self.summaries[1],
            "identical": self.identical,
            "system_prompt_diff": self.system_unified,
            "fields": [change.as_dict() for change in self.field_changes],
            "config_diff": self.config_unified,
        }


def _side_by_side(left: list[str], right: list[str]) -> list[tuple[str, str, str]]:
    """Rows of (operation, left line, right line), operation one of equal/replace/delete/insert."""
    rows: list[tuple[str, str, str]] = []
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for operation, a_start, a_end, b_start, b_end in matcher.get_opcodes():
        a_lines, b_lines = left[a_start:a_end], right[b_start:b_end]
        for index in range(max(len(a_lines), len(b_lines))):
            rows.append(
                (
                    operation,
                    a_lines[index] if index < len(a_lines) else "",
                    b_lines[index] if index < len(b_lines) else "",
                )
            )
    return rows


def versions_compare(
    *, agent: Agent, left: AgentVersion, right: AgentVersion, summaries: tuple[dict[str, Any], dict[str, Any]]
) -> VersionDiff:
    """The diff of two recorded versions (``selectors.version_diff`` looks them up by number)."""
    left_system, right_system = left.system_prompt.splitlines(), right.system_prompt.splitlines()
    left_config, right_config = _config_lines(left), _config_lines(right)
    return VersionDiff(
        agent=agent,
        left=left,
        right=right,
        system_unified=list(
            difflib.unified_diff(
                left_system, right_system, f"v{left.number}/system", f"v{right.number}/system", lineterm=""
            )
        ),
        config_unified=list(
            difflib.unified_diff(
                left_config, right_config, f"v{left.number}/config", f"v{right.number}/config", lineterm=""
            )
        ),
        system_rows=_side_by_side(left_system, right_system),
        config_rows=_side_by_side(left_config, right_config),
        field_changes=config_field_changes(left.config, right.config),
        summaries=summaries,
    )
