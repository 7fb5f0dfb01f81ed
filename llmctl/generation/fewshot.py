"""Few-shot prompts for the zero-shot eval, as lm-evaluation-harness (0.4) builds them, so that
`zero_shot.num_fewshot: k` and `lm_eval --num_fewshot k` score the same prompts:

- one `random.Random(seed)` for the whole evaluation (the harness's fewshot_random_seed, 1234 by
  default), drawing `rnd.sample(pool, k)` for each scored row in order (its ContextSampler.sample);
  the pool is the whole few-shot split, in file order;
- each example is its filled-in template, then its label's verbalizer (the harness's
  target_delimiter + target: llmctl's verbalizers carry their leading space), then the
  fewshot_delimiter ("\\n\\n"); the scored row's prompt follows the last one.

The few-shot split is never the split being scored (refused before any model loads), so a scored
row cannot be among its own examples, which is also when the harness samples without excluding it.
"""

from __future__ import annotations

from pathlib import Path
from random import Random

from llmctl.errors import DataError, UsageError


def same_split(a: str, b: str) -> bool:
    """Two split specs that read the same rows: equal names, or the same local file."""
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def fewshot_spec(zero_shot, data_cfg, scored: str) -> str:
    """The few-shot split's spec, refused when it is missing or is the split being scored."""
    spec = zero_shot.fewshot_split or data_cfg.train
    if not spec:
        raise UsageError("zero_shot.num_fewshot needs examples, but zero_shot.fewshot_split and data.train are null.",
                         "Set zero_shot.fewshot_split to a labelled split or file (e.g. train).")
    if same_split(spec, scored):
        raise UsageError(f"zero_shot.fewshot_split '{spec}' is the split being scored: its examples would include "
                         "the answers being scored (leakage).",
                         "Take the examples from another split (e.g. zero_shot.fewshot_split: train).")
    return spec


def sample_examples(pool_size: int, k: int, rows: int, seed: int, where: str) -> list[list[int]]:
    """For each scored row in order, the pool indices of its k examples (the harness's draws)."""
    if k > pool_size:
        raise DataError(f"zero_shot.num_fewshot {k} is more than the {pool_size} example(s) of {where}.",
                        "Lower zero_shot.num_fewshot or give a larger zero_shot.fewshot_split.")
    rnd = Random(seed)
    population = range(pool_size)
    return [rnd.sample(population, k) for _ in range(rows)]


def with_examples(prompts: list[str], example_prompts: list[str], example_answers: list[str],
                  draws: list[list[int]], delimiter: str) -> list[str]:
    """Each prompt after its examples: example prompt + answer + delimiter, for each drawn example."""
    return ["".join(example_prompts[j] + example_answers[j] + delimiter for j in drawn) + prompt
            for prompt, drawn in zip(prompts, draws)]
