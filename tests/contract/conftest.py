"""Fixtures of the contract suite: every test that takes ``kind`` or ``cache`` runs once per
registered format (``cachestatus.formats.names()``), on caches built once a session."""

from __future__ import annotations

import pytest

from tests.builders import BuiltCache
from tests.contract.suite import KINDS, Builds


@pytest.fixture(scope="session")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Builds:
    """Every format's cache of the contract's tiles, built once for the session."""
    return Builds(tmp_path_factory.mktemp("contract"))


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Each registered format in turn."""
    name: str = request.param
    return name


@pytest.fixture
def cache(builds: Builds, kind: str) -> BuiltCache:
    """The contract's tiles as a cache of ``kind``."""
    return builds.cache(kind)
