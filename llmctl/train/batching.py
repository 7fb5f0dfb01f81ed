"""The order batches come in, and how they split across processes.

We build batches ourselves rather than through accelerate's dataloader wrappers so that
the order is a pure function of (seed, epoch): a resumed run replays exactly the batches
an uninterrupted run would have seen, on any number of processes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from llmctl.data.store import release

# Examples per "megabatch" (in batches) sorted together when grouping by length: large
# enough that padding nearly vanishes, small enough that batch contents stay random.
MEGABATCH_BATCHES = 64


class Batches(Sequence):
    """Batches of example indices held as one int64 array, not a Python list per batch.

    Batch i is order[starts[k] : starts[k] + size] for k = which[i]; an item is a fresh
    list of ints, a slice is another view. At 1M rows the lists would cost ~40 MB of
    Python ints (200 MB at 5M) for the whole epoch, when a step reads one batch."""

    __slots__ = ("order", "size", "which")

    def __init__(self, order: np.ndarray, size: int, which: np.ndarray):
        self.order, self.size, self.which = order, size, which

    def __len__(self) -> int:
        return len(self.which)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Batches(self.order, self.size, self.which[i])
        start = int(self.which[i]) * self.size
        return self.order[start : start + self.size].tolist()

    def __eq__(self, other) -> bool:
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    def __repr__(self) -> str:
        return f"Batches({len(self)} of up to {self.size})"


def epoch_batches(lengths, batch_size: int, seed: int, epoch: int, group_by_length: bool) -> Batches:
    """The global batches of one training epoch, deterministic in (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    count = math.ceil(len(order) / batch_size)
    which = np.arange(count)
    if group_by_length:
        lengths = np.asarray(lengths)
        mega = batch_size * MEGABATCH_BATCHES
        for start in range(0, len(order), mega):  # in place: no second copy of the order
            chunk = order[start : start + mega]
            order[start : start + mega] = chunk[np.argsort(-lengths[chunk], kind="stable")]
    if group_by_length and count > 1:
        # Shuffle whole batches so lengths do not fall steadily within each megabatch,
        # but put the longest batch first: an out-of-memory error then shows at step 1.
        longest = int(np.argmax(np.maximum.reduceat(lengths[order], which * batch_size)))
        rest = np.delete(which, longest)
        which = np.concatenate([[longest], rest[rng.permutation(len(rest))]])
    if group_by_length:
        release(lengths)  # read whole once per epoch; a step needs none of it
    return Batches(order, batch_size, which)


def eval_batches(lengths, batch_size: int) -> list[list[int]]:
    """Evaluation batches sorted by length (least padding); predictions are re-ordered by index."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def shard(batch: list[int], rank: int, world: int) -> list[int]:
    """This process's share of a global batch. A short last batch is topped up by repeating
    its first examples so every process steps together (evaluation drops repeats by index)."""
    if world == 1:
        return batch
    per = math.ceil(len(batch) / world)
    padded = batch + [batch[i % len(batch)] for i in range(per * world - len(batch))]
    return padded[rank * per : (rank + 1) * per]
