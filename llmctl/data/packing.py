"""Packing: examples concatenated into one token stream and cut into fixed-size blocks, built a
chunk of examples at a time into a flat array (llmctl.data.store.Ragged), never as one Python
object per token.

Every block but the last holds exactly `size` tokens, so the blocks are the stream cut at
multiples of `size`: the stream is kept as it grows and the cuts are made once at the end. A
block that spans two chunks (the remainder of one chunk plus the start of the next) therefore
needs no carrying, and the result is exactly what cutting the whole stream in memory gives.
"""

from __future__ import annotations

import itertools

import numpy as np

from llmctl.data.store import Ragged, smallest_int_type


class PackedColumn:
    """The token stream of one column (input ids, or labels), appended a chunk of examples at a time;
    `extend` and `finish` as llmctl.data.store.Writer's, whose rows are examples rather than blocks."""

    def __init__(self, size: int):
        self.size = size
        self._parts: list[np.ndarray] = []

    def extend(self, rows) -> None:
        count = sum(len(r) for r in rows)
        flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=count)
        self._parts.append(flat.astype(smallest_int_type(flat), copy=False))

    def finish(self) -> Ragged:
        """The blocks; the last may be shorter (it is kept, not dropped)."""
        kind = np.result_type(*[p.dtype for p in self._parts]) if self._parts else np.int32
        # One copy at most: the parts are cast as they are concatenated, not each first.
        values = np.concatenate(self._parts, dtype=kind) if self._parts else np.zeros(0, kind)
        self._parts = []
        offsets = np.append(np.arange(0, len(values), self.size, dtype=np.int64), np.int64(len(values)))
        return Ragged(values, offsets)
