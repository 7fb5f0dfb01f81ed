"""The one padding collator: feature rows -> a batch of tensors, for every task.

A task says what its rows hold (`Padding`); this module does the padding, the attention
mask and the `index` column that evaluation uses to put predictions back in order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Padding:
    """How one task's feature rows become a batch.

    sequences: list-valued columns and the value that pads each (the tokenizer's pad id for
        input_ids, 0 for token_type_ids, -100 for labels the loss must ignore); each column is
        padded to its own longest row.
    values: one number per row (a class id, a regression target, an answer start), stacked
        with the torch dtype named ("long", "float").
    positions: those `values` that point into `mask_from`, so they move with left padding.
    left: pad on the left (decoder-only models that generate from the end of the prompt).
    left_when_missing: pad on the left only for rows without this column (a causal LM's prompts
        to continue have no labels and are generated from; its training rows are right-padded).
    mask_from: the column whose real length makes `attention_mask`; None for no mask.
    segments: a column of where examples begin inside each row (packed blocks, beside the row's
        first token). Rows that have it get, instead of the 2D mask, position_ids counted from each
        example's start and a 4D block-diagonal causal mask (float, 0 = attend, finfo.min = not:
        what eager adds and sdpa accepts), so every example sees only itself, as when run alone;
        the label of each example's first token is -100, since nothing of its own predicts it.
        transformers 5 passes a 4D mask to attention as given (masking_utils: "already prepared");
        position_ids alone would separate examples only without a 2D mask and without a cache.
    Columns a row does not have (labels at prediction time) are left out of the batch.
    """

    sequences: Mapping[str, int]
    values: Mapping[str, str] = field(default_factory=dict)
    positions: tuple[str, ...] = ()
    left: bool = False
    left_when_missing: str | None = None
    mask_from: str | None = "input_ids"
    pad_to_multiple_of: int | None = None
    segments: str | None = None


def collate(rows: list[dict], padding: Padding) -> dict:
    """Pad `rows` (dicts of lists or arrays, each with an `index`) into a dict of tensors."""
    import torch

    first, batch, shift = rows[0], {}, None
    left = padding.left or (padding.left_when_missing is not None and padding.left_when_missing not in first)
    for name, pad_value in padding.sequences.items():
        if name not in first:
            continue
        padded, lengths = pad_sequences([r[name] for r in rows], pad_value, left, padding.pad_to_multiple_of)
        batch[name] = torch.from_numpy(padded)
        if name == padding.mask_from:
            batch["attention_mask"] = torch.from_numpy(_mask(lengths, padded.shape[1], left))
            shift = torch.from_numpy(padded.shape[1] - lengths) if left else None
    for name, dtype in padding.values.items():
        if name in first:
            batch[name] = torch.tensor([r[name] for r in rows], dtype=getattr(torch, dtype))
            if name in padding.positions and shift is not None:
                batch[name] = batch[name] + shift
    if padding.segments is not None and padding.segments in first and "attention_mask" in batch:
        _separate_examples(batch, [r[padding.segments] for r in rows])
    batch["index"] = torch.tensor([r["index"] for r in rows])
    return batch


def _separate_examples(batch: dict, starts: list) -> None:
    """Replace the batch's 2D mask by per-example positions and a block-diagonal causal mask."""
    import numpy as np
    import torch

    real = batch["attention_mask"].numpy().astype(bool)
    rows, width = real.shape
    segment = np.zeros((rows, width), dtype=np.int64)
    for i, row_starts in enumerate(starts):
        np.add.at(segment[i], np.asarray(row_starts, dtype=np.int64), 1)
    segment = np.cumsum(segment, axis=1)
    # Padding is a segment of its own: a real token never sees it, and it sees itself (no empty row).
    segment[~real] = segment.max() + 1 if segment.size else 0
    column = np.arange(width)
    first = np.zeros((rows, width), dtype=bool)
    first[:, 0] = True
    first[:, 1:] = segment[:, 1:] != segment[:, :-1]
    segment_start = np.maximum.accumulate(np.where(first, column, 0), axis=1)
    batch["position_ids"] = torch.from_numpy(column - segment_start)
    allowed = (segment[:, :, None] == segment[:, None, :]) & (column[:, None] >= column[None, :])
    mask = np.where(allowed, np.float32(0), np.finfo(np.float32).min).astype(np.float32)
    batch["attention_mask"] = torch.from_numpy(mask[:, None])
    if "labels" in batch:
        starts_of_examples = first & real
        starts_of_examples[:, 0] = False  # the block's first label is never predicted anyway
        batch["labels"][torch.from_numpy(starts_of_examples)] = -100


def pad_sequences(seqs: list, pad_value: int, left: bool = False, pad_to_multiple_of: int | None = None):
    """(int64 array [rows, width], int64 array of real lengths)."""
    import numpy as np

    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    width = int(lengths.max()) if len(seqs) else 0
    if pad_to_multiple_of:
        width = math.ceil(width / pad_to_multiple_of) * pad_to_multiple_of
    out = np.full((len(seqs), width), pad_value, dtype=np.int64)
    for i, seq in enumerate(seqs):
        n = len(seq)
        if n and left:
            out[i, width - n:] = seq
        elif n:
            out[i, :n] = seq
    return out, lengths


def _mask(lengths, width: int, left: bool):
    import numpy as np

    positions = np.arange(width)[None, :]
    real = positions >= (width - lengths)[:, None] if left else positions < lengths[:, None]
    return real.astype(np.int64)
