from __future__ import annotations

import pytest

from fuzzkit import load_registry
from fuzzkit.runner import Session

# The pytest plugin's tests run pytest in fresh project folders.
pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def session() -> Session:
    """All installed plugins, loaded once (registration is start-up work)."""
    return Session(load_registry())
