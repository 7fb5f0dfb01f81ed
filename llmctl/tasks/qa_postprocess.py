"""Extractive QA post-processing: window logits -> answer text, in plain numpy (no torch).

One example (question + context) is split into several overlapping windows ("features").
For each window the model gives a start and an end logit per token. Here, as in
transformers' `utils_qa.postprocess_qa_predictions`:

- candidates are the n-best start x n-best end tokens of every window of the example,
  keeping only spans inside the context (offset known), end >= start and at most
  `max_answer_length` tokens long; one span found in two overlapping windows counts once,
  with its best score;
- the answer text is cut from the *original* context with the character offsets, so
  case, accents and spacing are the user's, not the tokenizer's;
- the null ("no answer") score of an example is the smallest start+end logit at the null
  position (index 0) over its windows; for SQuAD v2 the example is predicted unanswerable
  when `null_score - best_span_score > null_threshold`.

Offsets are int arrays of shape (tokens, 2) with -1 where a token is not part of the
context (question, special tokens, padding); `offsets_array` converts the
`[(start, end) | None, ...]` lists tokenizers give.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

NULL_INDEX = 0  # the position whose logits mean "no answer in this window" (BERT's [CLS])


@dataclass
class Prediction:
    """The post-processed answer for one example. `start`/`end` are character offsets
    in the context (end exclusive); None when there is no span."""

    text: str
    start: int | None
    end: int | None
    score: float  # start + end logit of the best span (-inf when there is none)
    probability: float  # softmax over the n-best spans (and the null answer for v2)
    null_score: float  # min over windows of start+end logit at the null position
    no_answer: bool = False  # v2: null_score - score > threshold
    n_best: list[dict] = field(default_factory=list)

    @property
    def null_score_diff(self) -> float:
        """null_score - best span score: above the threshold means "no answer"."""
        return float(self.null_score - self.score)


def offsets_array(offsets: Sequence) -> np.ndarray:
    """[(s, e) | None, ...] -> int64 array (n, 2) with -1 for None."""
    out = np.full((len(offsets), 2), -1, dtype=np.int64)
    for i, pair in enumerate(offsets):
        if pair is not None:
            out[i] = pair
    return out


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, largest first (stable for ties)."""
    if k >= len(values):
        return np.argsort(-values, kind="stable")
    part = np.argpartition(-values, k - 1)[:k]
    return part[np.argsort(-values[part], kind="stable")]


def window_candidates(start_logits: np.ndarray, end_logits: np.ndarray, offsets: np.ndarray,
                      n_best: int, max_answer_length: int) -> list[tuple[float, int, int, float, float]]:
    """Valid spans of one window as (score, start_char, end_char, start_logit, end_logit)."""
    n = min(len(offsets), len(start_logits), len(end_logits))
    offsets = offsets[:n]
    valid = offsets[:, 0] >= 0
    if not valid.any():
        return []
    start = np.where(valid, np.asarray(start_logits[:n], dtype=np.float64), -np.inf)
    end = np.where(valid, np.asarray(end_logits[:n], dtype=np.float64), -np.inf)
    k = min(n_best, int(valid.sum()))
    starts, ends = _top(start, k), _top(end, k)
    out = []
    for s in starts:
        for e in ends:
            if e < s or e - s + 1 > max_answer_length:
                continue
            out.append((float(start[s] + end[e]), int(offsets[s, 0]), int(offsets[e, 1]),
                        float(start[s]), float(end[e])))
    return out


def _trim(context: str, start: int, end: int) -> tuple[int, int]:
    """Drop surrounding whitespace (byte-level BPE offsets include the leading space)."""
    while start < end and context[start].isspace():
        start += 1
    while end > start and context[end - 1].isspace():
        end -= 1
    return start, end


def _softmax(scores: list[float]) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64)
    if len(values) == 0:
        return values
    values = np.exp(values - values.max())
    return values / values.sum()


def postprocess_example(context: str, start_logits: Sequence[np.ndarray], end_logits: Sequence[np.ndarray],
                        offsets: Sequence[np.ndarray], n_best: int = 20, max_answer_length: int = 30,
                        version_2: bool = False, null_threshold: float = 0.0) -> Prediction:
    """The answer for one example from the logits and offsets of all its windows."""
    best: dict[tuple[int, int], tuple[float, float, float]] = {}
    null_score = np.inf
    for s_logits, e_logits, offs in zip(start_logits, end_logits, offsets):
        null_score = min(null_score, float(s_logits[NULL_INDEX]) + float(e_logits[NULL_INDEX]))
        for score, s_char, e_char, s_logit, e_logit in window_candidates(s_logits, e_logits, offs, n_best,
                                                                         max_answer_length):
            s_char, e_char = _trim(context, s_char, e_char)
            if e_char <= s_char:
                continue  # a whitespace-only span
            if (s_char, e_char) not in best or score > best[(s_char, e_char)][0]:
                best[(s_char, e_char)] = (score, s_logit, e_logit)
    ranked = sorted(best.items(), key=lambda item: -item[1][0])[:n_best]
    scores = [v[0] for _, v in ranked] + ([null_score] if version_2 else [])
    probs = _softmax(scores)
    n_best_list = [{"text": context[s:e], "start": s, "end": e, "score": v[0], "probability": float(p)}
                   for ((s, e), v), p in zip(ranked, probs)]
    if not ranked:  # no valid span anywhere (e.g. every window's context was empty)
        return Prediction("", None, None, -np.inf, 0.0, float(null_score), no_answer=version_2)
    (s, e), (score, _, _) = ranked[0]
    prediction = Prediction(context[s:e], s, e, score, float(probs[0]), float(null_score), n_best=n_best_list)
    if version_2:
        prediction.no_answer = prediction.null_score_diff > null_threshold
        if prediction.no_answer:
            prediction.probability = float(probs[-1])  # the null answer's share
    return prediction


def postprocess(contexts: Sequence[str], feature_example: Sequence[int], start_logits: Sequence[np.ndarray],
                end_logits: Sequence[np.ndarray], offsets: Sequence[np.ndarray], n_best: int = 20,
                max_answer_length: int = 30, version_2: bool = False,
                null_threshold: float = 0.0) -> list[Prediction]:
    """One Prediction per example (in example order) from per-window arrays.

    `feature_example[i]` is the example index of window i; windows of one example may come
    in any order. Logit arrays may be longer than their offsets (padding); the extra
    positions are ignored.
    """
    windows: list[list[int]] = [[] for _ in contexts]
    for feature, example in enumerate(feature_example):
        windows[int(example)].append(feature)
    out = []
    for example, features in enumerate(windows):
        out.append(postprocess_example(
            contexts[example], [start_logits[f] for f in features], [end_logits[f] for f in features],
            [offsets[f] for f in features], n_best, max_answer_length, version_2, null_threshold))
    return out
