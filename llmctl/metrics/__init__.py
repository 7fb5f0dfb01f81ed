"""Evaluation metrics shipped as local `evaluate` modules.

`evaluate.load("accuracy")` resolves the name on the Hugging Face Hub and
downloads a script; our machines cannot reach the Hub, so that call fails.
Each metric here is a local module folder `<name>/<name>.py`, which
`evaluate.load(<dir>)` imports straight from disk without network access.

`evaluate` is imported lazily because it pulls in datasets, pyarrow,
transformers and torch (several seconds), and the CLI must start without them.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import evaluate

AVAILABLE: tuple[str, ...] = (
    "accuracy",
    "f1",
    "matthews_correlation",
    "pearsonr",
    "spearmanr",
)
# Metrics over structured inputs (id + text spans), not label lists: SQuAD v1.1 / v2.0.
SPAN_METRICS: tuple[str, ...] = (
    "squad",
    "squad_v2",
)
# Metrics over tag sequences (one list of str tags per sentence): entity-level NER scores.
SEQUENCE_METRICS: tuple[str, ...] = (
    "seqeval",
)
# Metrics over generated text (one str per example): seq2seq fine-tuning.
TEXT_METRICS: tuple[str, ...] = (
    "rouge",
    "bleu",
)

_HERE = Path(__file__).resolve().parent

# Metrics where smaller is better: the best model minimises them and gates use --fail-over.
LOWER_IS_BETTER: tuple[str, ...] = ("loss", "mse", "mae", "rmse", "perplexity", "nats_per_character",
                                    "bits_per_character", "bits_per_byte")


def lower_is_better(name: str) -> bool:
    return name in LOWER_IS_BETTER or name.endswith("_loss")


@functools.lru_cache(maxsize=None)
def load(name: str) -> "evaluate.EvaluationModule":
    """Load a shipped metric by name; the instance is shared, so call
    `compute(predictions=..., references=...)` rather than `add_batch`."""
    known = AVAILABLE + SPAN_METRICS + SEQUENCE_METRICS + TEXT_METRICS
    if name not in known:
        raise ValueError(f"Unknown metric {name!r}; available: {', '.join(known)}")
    import evaluate

    # An absolute directory path makes evaluate take its local-file branch,
    # never the Hub lookup it uses for bare names. keep_in_memory: the shared
    # instance otherwise writes Arrow files under ~/.cache on every compute and
    # leaks a file lock when _compute raises, stalling the next call by 1 s.
    return evaluate.load(str(_HERE / name), keep_in_memory=True)
