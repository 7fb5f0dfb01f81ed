"""T5's span corruption (the T5 paper, section 3.1.4; `run_t5_mlm_flax.py`): of a block of `n` tokens,
round(n * density) are noise, in round(noise / mean_span) spans; the noise and the kept text are each
cut into that many non-empty spans at random and interleaved, kept text first. Each noise span is
replaced by one sentinel in the input, and the target lists each sentinel followed by the span it hid:

    text     The  cute  dog  walks  in  the  park
    input    The  <extra_id_0>  walks  in  <extra_id_1>  park  </s>
    target   <extra_id_0>  cute  dog  <extra_id_1>  the  </s>

Each example's draw depends on (stream, seed, epoch, example index) alone (llmctl.tasks.masking's
rule), so a resumed run and any number of processes see the same corruption.
"""

from __future__ import annotations

import numpy as np


def segment_lengths(items: int, segments: int, rng: np.random.Generator) -> np.ndarray:
    """`items` cut into `segments` non-empty runs at random: the lengths of the runs."""
    cuts = np.zeros(items - 1, dtype=bool)
    cuts[: segments - 1] = True
    rng.shuffle(cuts)
    starts = np.flatnonzero(np.concatenate([[True], cuts]))
    return np.diff(np.append(starts, items))


def noise_mask(length: int, density: float, mean_span: float, rng: np.random.Generator) -> np.ndarray:
    """True at the tokens a block of `length` hides (at least one, never all)."""
    if length < 2:
        return np.zeros(length, dtype=bool)
    noise = min(max(int(round(length * density)), 1), length - 1)
    spans = max(int(round(noise / mean_span)), 1)
    spans = min(spans, noise, length - noise)
    noise_runs = segment_lengths(noise, spans, rng)
    kept_runs = segment_lengths(length - noise, spans, rng)
    runs = np.stack([kept_runs, noise_runs], axis=1).reshape(-1)  # kept, noise, kept, noise, ...
    return np.repeat(np.arange(len(runs)) % 2 == 1, runs)


def corrupt(tokens: np.ndarray, mask: np.ndarray, sentinels: np.ndarray, eos: int) -> tuple[np.ndarray, np.ndarray]:
    """(input ids, target ids): each noise span replaced by the next sentinel in the input, and the
    target each sentinel followed by the tokens it hid; both end in EOS."""
    starts = mask & ~np.concatenate([[False], mask[:-1]])  # the first token of each noise span
    span = np.cumsum(starts) - 1  # which noise span a token is in (or follows)
    inputs = np.where(starts, sentinels[np.maximum(span, 0)], tokens)[~mask | starts]
    # The target: at each span start its sentinel, then the span's tokens.
    noise_span = span[mask]
    first = starts[mask]
    targets = np.empty(int(mask.sum() + starts.sum()), dtype=np.int64)
    where_sentinel = np.flatnonzero(first) + np.arange(int(first.sum()))
    targets[where_sentinel] = sentinels[noise_span[first]]
    others = np.ones(len(targets), dtype=bool)
    others[where_sentinel] = False
    targets[others] = tokens[mask]
    return np.append(inputs, eos).astype(np.int64), np.append(targets, eos).astype(np.int64)


def span_count(length: int, density: float, mean_span: float) -> int:
    """The most spans a block of `length` tokens is cut into (one sentinel each)."""
    noise = min(max(int(round(length * density)), 1), max(length - 1, 1))
    return max(int(round(noise / mean_span)), 1)
