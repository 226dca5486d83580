"""The local checks in front of every agent create and update: the API's limits and what promptctl can store."""

from __future__ import annotations

import pytest

from managed_agents import validation
from managed_agents.client import GatewayError


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"metadata": {f"k{n}": "v" for n in range(17)}}, "at most 16"),
        ({"metadata": {"k" * 65: "v"}}, "keys take up to 64"),
        ({"metadata": {"team": "v" * 513}}, "values up to 512"),
        ({"metadata": {"team": "a\x00b"}}, "NUL character"),
        ({"description": "d" * 2049}, "over 2048"),
        ({"name": ""}, "not allowed"),
        ({"model": "claude\nsonnet"}, "is not a model id"),
        ({"system": "   "}, "is empty"),
    ],
)
def test_agent_config_check_refuses_in_one_line(config, says):
    with pytest.raises(GatewayError) as refused:
        validation.agent_config_check(**config)

    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_agent_config_check_takes_what_the_tutorial_sends():
    validation.agent_config_check(
        name="ticket-triage", model="claude-sonnet-4-6", system="Route tickets.", metadata={"team": "ops"}
    )


def test_the_prompt_cap_is_a_setting_counted_in_utf8_bytes(settings):
    settings.PROMPTCTL_MAX_PROMPT_BYTES = 10
    validation.system_check("é" * 5)  # 10 bytes

    with pytest.raises(GatewayError, match="11 bytes, over the 10-byte cap"):
        validation.system_check("é" * 5 + "x")


def test_text_problem_names_where():
    assert validation.text_problem("fine") is None
    assert "at character 3" in validation.text_problem("abc\x00")
    assert "lone surrogate (\\ud800) at character 1" in validation.text_problem("a\ud800")


def test_storable_problem_looks_through_the_whole_config():
    config = {"tools": [{"name": "ok"}, {"name": "bad\x00"}], "metadata": {}}

    problem = validation.storable_problem(model="claude-sonnet-4-6", system="fine", config=config)

    assert problem is not None and "config field tools[1].name" in problem
    assert validation.storable_problem(model="m" * 201, system="fine", config={}) is not None
    assert validation.storable_problem(model="claude-sonnet-4-6", system="fine", config={"a": ["b"]}) is None
