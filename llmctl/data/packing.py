"""Packing: examples concatenated into one token stream and cut into fixed-size blocks.

Every block but the last holds exactly `size` tokens, so the blocks are the stream cut at
multiples of `size`: the examples are written row by row (llmctl.data.store.Writer, a chunk at a
time) and the cuts are made once at the end. A block that spans two chunks therefore needs no
carrying, and the result is exactly what cutting the whole stream in memory gives.
"""

from __future__ import annotations

import numpy as np

from llmctl.data.store import Ragged


def blocks(column: Ragged, size: int) -> Ragged:
    """The same tokens cut into `size`-token rows; the last may be shorter (it is kept, not dropped)."""
    values = column.values
    return Ragged(values, np.append(np.arange(0, len(values), size, dtype=np.int64), np.int64(len(values))))
