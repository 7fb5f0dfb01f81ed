"""`METRIC=VALUE` arguments: eval's --fail-under / --fail-over gates and `runs compare --max-drop`."""

from __future__ import annotations

import math

from llmctl.errors import UsageError


def parse_thresholds(items: list[str], flag: str, example: str) -> dict[str, float]:
    gates = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip() or not math.isfinite(number):
            raise UsageError(f"{flag} '{item}' is not METRIC=VALUE with a finite number.", f"Example: {flag} {example}")
        gates[name.strip()] = number
    return gates
