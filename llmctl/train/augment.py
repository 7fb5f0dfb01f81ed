"""distill.augment: perturbed copies of the training rows for the teacher to label.

With a few thousand rows the teacher's soft labels on the rows themselves say little beyond
the labels (it has nearly learned them); its knowledge shows on inputs it was not trained on.
Tang et al. 2019 ("Distilling task-specific knowledge from BERT into simple neural networks")
and TinyBERT make such inputs from the training rows: here, on the tokens of each row,

- masking: each token of the text (not the special tokens) becomes the mask token with
  probability `mask_p` (a tokenizer without one: the token is dropped);
- n-gram sampling: with probability `ngram_p`, a single-text copy keeps only a random span of
  1 to 5 of its tokens between its special tokens.

A copy's label is the teacher's prediction for it (llmctl.core.distill); the loss treats it as
any row. The copies depend only on the rows and the seed, so a rerun makes the same ones and
finds the teacher's outputs for them in the cache.
"""

from __future__ import annotations

import numpy as np

MASK_P, NGRAM_P, MAX_NGRAM = 0.1, 0.25, 5


def perturbed_copies(features, copies: int, seed: int, mask_id: int | None, special_ids: set[int]):
    """Features of the rows followed by `copies` perturbed copies of each (row i's copies are
    rows n + i * copies ...), every column as lists; the copies' labels are still the row's."""
    from llmctl.data.features import Features

    rng = np.random.default_rng(seed)
    n = len(features)
    pair = "token_type_ids" in features.columns
    columns = {name: [_plain(v) for v in column] for name, column in features.columns.items()}
    for i in range(n):
        ids = columns["input_ids"][i]
        types = columns["token_type_ids"][i] if pair else None
        for _ in range(copies):
            new_ids, new_types = _perturb(ids, types, rng, mask_id, special_ids)
            columns["input_ids"].append(new_ids)
            if pair:
                columns["token_type_ids"].append(new_types)
            for name in columns.keys() - {"input_ids", "token_type_ids"}:
                columns[name].append(columns[name][i])
    lengths = [len(ids) for ids in columns["input_ids"]]
    return Features(columns, lengths, dict(features.meta), features.tokenizer, features.notes)


def _plain(value):
    """A row's value from a columnar store (a numpy row or scalar) as the Python lists and
    numbers that in-memory features hold, so rows and copies sit in one list."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if isinstance(value, np.generic) else value


def _perturb(ids: list[int], types: list[int] | None, rng, mask_id: int | None, special: set[int]):
    inner = [k for k, t in enumerate(ids) if t not in special]
    keep = set(range(len(ids)))
    single = types is None or len(set(types)) == 1
    if single and len(inner) > 1 and rng.random() < NGRAM_P:
        size = int(rng.integers(1, min(MAX_NGRAM, len(inner)) + 1))
        start = int(rng.integers(0, len(inner) - size + 1))
        keep -= set(inner[:start]) | set(inner[start + size:])
    out_ids, out_types = [], []
    for k in sorted(keep):
        token = ids[k]
        if k in inner and rng.random() < MASK_P:
            if mask_id is None:
                continue
            token = mask_id
        out_ids.append(token)
        if types is not None:
            out_types.append(types[k])
    return out_ids, (out_types if types is not None else None)
