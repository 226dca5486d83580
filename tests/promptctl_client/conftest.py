"""Fixtures for the client's tests: a private config directory, and the canned-JSON stand-in server."""

from __future__ import annotations

import pytest

from tests.promptctl_client.support import CannedApi, client_env


@pytest.fixture
def config_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def canned_api():
    api = CannedApi()
    yield api
    api.close()


@pytest.fixture
def canned_env(config_home, canned_api):
    """A client environment pointed at the canned server with a token."""
    return client_env(config_home, PROMPTCTL_URL=canned_api.url, PROMPTCTL_TOKEN="pctlu_test-token")
