"""BERT's masked-language-model corruption (run_mlm.py's collator): pick `probability` of the
non-special tokens, replace 80% of those by the mask token, 10% by a random token and leave 10%
as they are; the labels are the picked tokens' ids and -100 everywhere else.

Each example's draw depends on (stream, seed, epoch, example index) alone, never on global RNG
state or on which batch or process the example lands in: a resumed run, any number of
processes and any batch size draw the same masks, and a new epoch draws new ones. Evaluation
uses a stream of its own with a fixed seed and epoch, so every evaluation scores the same masks.

Whole-word masking picks words rather than tokens (a word = a token that starts one plus the
pieces that continue it, from the tokenizer's word ids) and masks all of a picked word's
pieces; the 80/10/10 choice is still made per token, as BERT's own pre-training data does.
"""

from __future__ import annotations

import functools

import numpy as np

TRAIN_STREAM, EVAL_STREAM = 0, 1
EVAL_SEED, EVAL_EPOCH = 0, 0
MASK_SHARE, RANDOM_SHARE = 0.8, 0.1  # the remaining 10% of picked tokens stay as they are


def example_rng(stream: int, seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([stream, seed, epoch, index])


@functools.lru_cache(maxsize=8)
def replacement_pool(vocab_size: int, special_ids: tuple[int, ...]) -> np.ndarray:
    """Token ids a random replacement draws from: the vocabulary without special tokens, so a
    replacement never puts a [CLS], [SEP] or [PAD] in the middle of text."""
    return np.setdiff1d(np.arange(vocab_size, dtype=np.int64), np.asarray(special_ids, dtype=np.int64))


def mask_example(tokens: np.ndarray, special: np.ndarray, rng: np.random.Generator, probability: float,
                 mask_id: int, pool: np.ndarray, word_starts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(input ids, labels) of one example. `special`: True where a token may never be picked.
    `word_starts`: None for token-level masking, else 1 where a token begins a word (0 for a
    piece that continues the word before it). An example with something to pick always gets at
    least one picked token: a batch with no label at all would have no loss (nan)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    candidates = ~np.asarray(special, dtype=bool)
    if word_starts is None:
        group = np.arange(len(tokens))
    else:
        starts = np.asarray(word_starts, dtype=bool).copy()
        if len(starts):
            starts[0] = True  # a block may begin inside a word: its first piece starts a group
        group = np.cumsum(starts) - 1
    groups = int(group[-1]) + 1 if len(group) else 0
    picked_groups = rng.random(groups) < probability
    picked = picked_groups[group] & candidates
    if not picked.any() and candidates.any():
        picked = (group == group[rng.choice(np.flatnonzero(candidates))]) & candidates
    labels = np.where(picked, tokens, -100)
    choice = rng.random(len(tokens))
    ids = tokens.copy()
    ids[picked & (choice < MASK_SHARE)] = mask_id
    randomised = picked & (choice >= MASK_SHARE) & (choice < MASK_SHARE + RANDOM_SHARE)
    ids[randomised] = pool[rng.integers(0, len(pool), int(randomised.sum()))]
    return ids, labels


def mask_rows(rows: list[dict], special_ids: tuple[int, ...], mask_id: int, vocab_size: int, probability: float,
              stream: int, seed: int, epoch: int) -> list[dict]:
    """Feature rows ({"tokens", optional "word_starts", "index"}) as model rows ({"input_ids",
    "labels", "index"}), each drawn from its own (stream, seed, epoch, index)."""
    pool = replacement_pool(vocab_size, special_ids)
    specials = np.asarray(special_ids, dtype=np.int64)
    out = []
    for row in rows:
        tokens = np.asarray(row["tokens"], dtype=np.int64)
        rng = example_rng(stream, seed, epoch, int(row["index"]))
        ids, labels = mask_example(tokens, np.isin(tokens, specials), rng, probability, mask_id, pool,
                                   row.get("word_starts"))
        out.append({"input_ids": ids, "labels": labels, "index": row["index"]})
    return out
