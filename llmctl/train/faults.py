"""Kept only for llmctl/data/cache.py, which still calls `faults.before_write`; the seam is
llmctl/faults.py (`hook("write", ...)`). Remove once data/cache.py calls that directly."""

from llmctl.faults import hook


def before_write(step: int, name: str) -> None:
    hook("write", step=step, name=name)
