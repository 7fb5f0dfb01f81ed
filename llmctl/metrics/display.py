"""One number format per kind, wherever metrics are shown to people (the console's tables after
`finetune` / `eval`, the HTML report): counts as integers with thousands separators (even when
logged as floats, like seqeval's `LOC_number: 12.0` or SQuAD v2's `total: 50.0`), scores with four
decimals, booleans as yes / no, nothing for a missing value.

    show(0.5, "f1")        -> "0.5000"
    show(50.0, "total")    -> "50"
    show(False, "deterministic_algorithms") -> "no"
"""

from __future__ import annotations

# Names whose values count things (rows, steps, entities, processes): shown as integers.
COUNT_NAMES = {"step", "steps", "total_steps", "samples", "rows", "examples", "count", "support", "total",
               "number", "num_processes", "processes", "skipped_steps", "epochs_run", "tokens", "prompts",
               "new_tokens"}
COUNT_SUFFIXES = ("_number", "_total", "_count", "_rows", "_steps", "_samples", "_tokens")


def is_count(name: str | None) -> bool:
    return bool(name) and (name in COUNT_NAMES or name.endswith(COUNT_SUFFIXES))


def show(value, name: str | None = None) -> str:
    """`value` (of the metric or figure `name`) as text, by the rules above."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        if is_count(name) and value.is_integer():
            return f"{int(value):,}"
        return f"{value:,.4f}"
    return str(value)
