"""fuzzkit's hypothesis settings profiles, registered when this module is imported.

``fuzzkit-ci`` (derandomized, small), ``fuzzkit-dev`` and ``fuzzkit-overnight``. The hypothesis
engine and the pytest plugin both import it, so ``pytest --hypothesis-profile=fuzzkit-ci``
works in any project that installs fuzzkit: hypothesis loads the profile while pytest
configures, after installed plugins are imported.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings

#: Rules a state machine example runs at most.
STEPS = 32
PROFILES = ("fuzzkit-ci", "fuzzkit-dev", "fuzzkit-overnight")

_common: dict[str, Any] = {
    "deadline": None,
    "stateful_step_count": STEPS,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
}
settings.register_profile("fuzzkit-ci", max_examples=60, derandomize=True, database=None, **_common)
settings.register_profile("fuzzkit-dev", max_examples=500, **_common)
settings.register_profile("fuzzkit-overnight", max_examples=10_000_000, **_common)
