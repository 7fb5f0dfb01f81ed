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
from llmctl.data.store import blocks as chunks


def blocks(column: Ragged, size: int) -> Ragged:
    """The same tokens cut into `size`-token rows; the last may be shorter (it is kept, not dropped)."""
    values = column.values
    return Ragged(values, np.append(np.arange(0, len(values), size, dtype=np.int64), np.int64(len(values))))


def example_starts(examples: Ragged, size: int) -> Ragged:
    """For each block `blocks(examples, size)` makes, where an example begins inside it, leaving out
    the block's first token (which always begins one, or the rest of one cut by the block before).
    A few small ints a block, so the collator can keep packed examples apart (llmctl.data.collate).

    The examples' offsets are read a million at a time, their mapped pages given back after each:
    a corpus of many short documents (a 1 GB text split by line has ~20M) would otherwise hold
    several int64 temporaries of that length at once, the memory a pre-training corpus must not
    grow with."""
    inner = examples.offsets[1:-1]
    count = -(-int(examples.offsets[-1]) // size)
    offsets = np.zeros(count + 1, dtype=np.int64)
    kind = smallest_int_type(np.array([size - 1]))
    parts = []
    for starts in chunks(inner):
        starts = starts[starts % size != 0]
        if not len(starts):
            continue
        block = starts // size  # ascending, as the offsets are
        first = int(block[0])
        found = np.bincount(block - first)
        offsets[first + 1 : first + 1 + len(found)] += found
        parts.append((starts % size).astype(kind))
    np.cumsum(offsets, out=offsets)
    within = np.concatenate(parts) if parts else np.zeros(0, dtype=kind)
    return Ragged(within.astype(smallest_int_type(within), copy=False), offsets)
