"""A plugin that watches campaigns: it appends every event to the file named by
``FUZZKIT_TEST_EVENTS``. ``-p variants.campaign_observer:failing`` loads one that raises."""

from __future__ import annotations

import json
import os
from typing import Any

from fuzzkit import hookimpl


@hookimpl
def fuzzkit_campaign_event(event: Any) -> None:
    with open(os.environ["FUZZKIT_TEST_EVENTS"], "a") as f:
        f.write(json.dumps(event) + "\n")


class Failing:
    @hookimpl
    def fuzzkit_campaign_event(self, event: Any) -> None:
        raise RuntimeError("the status page is down")


failing = Failing()
