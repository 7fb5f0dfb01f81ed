"""Packing: examples concatenated into one token stream and cut into fixed-size blocks.

Every block but the last holds exactly `size` tokens, so the blocks are the stream cut at
multiples of `size`: the examples are written row by row (llmctl.data.store.Writer, a chunk at a
time) and the cuts are made once at the end. A block that spans two chunks therefore needs no
carrying, and the result is exactly what cutting the whole stream in memory gives. Where the
examples begin inside each block is kept beside the blocks (`example_starts`).
"""

from __future__ import annotations

import numpy as np

from llmctl.data.store import Ragged, smallest_int_type


def blocks(column: Ragged, size: int) -> Ragged:
    """The same tokens cut into `size`-token rows; the last may be shorter (it is kept, not dropped)."""
    values = column.values
    return Ragged(values, np.append(np.arange(0, len(values), size, dtype=np.int64), np.int64(len(values))))


def example_starts(examples: Ragged, size: int) -> Ragged:
    """For each block `blocks(examples, size)` makes, where an example begins inside it, leaving out
    the block's first token (which always begins one, or the rest of one cut by the block before).
    A few small ints a block, so the collator can keep packed examples apart (llmctl.data.collate)."""
    starts = examples.offsets[1:-1]
    starts = starts[starts % size != 0]
    count = -(-int(examples.offsets[-1]) // size)
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(np.bincount(starts // size, minlength=count), out=offsets[1:])
    within = starts % size
    return Ragged(within.astype(smallest_int_type(within), copy=False), offsets)
