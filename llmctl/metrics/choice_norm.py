"""acc_norm's length normalisation, shared by zero-shot scoring (llmctl.generation.zeroshot) and the
multiple-choice task's log-likelihood predictions (llmctl.tasks.multiple_choice)."""

from __future__ import annotations


def norm_lengths(verbalizers: list[str]) -> list[int]:
    """The lengths acc_norm divides by, as lm-evaluation-harness: characters of the choice text
    (not bytes, not tokens). A harness task writes its choices without the space that joins them
    to the prompt (target_delimiter " "), so a verbalizer's leading whitespace does not count."""
    return [len(v.lstrip()) or len(v) for v in verbalizers]
