from __future__ import annotations

import pytest

from fuzzkit import load_registry
from fuzzkit.runner import Session


@pytest.fixture(scope="session")
def session() -> Session:
    """All installed plugins, loaded once (registration is start-up work)."""
    return Session(load_registry())
