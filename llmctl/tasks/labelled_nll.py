"""Causal-LM log-probabilities of the labelled tokens without full-vocabulary logits.

The stock forward projects every position of a batch onto the whole vocabulary (and the
caller then upcasts it to fp32): for SmolLM2 (49,152 words) at eval batch 64 x 256 tokens
that is 3.2 GB of logits, most of them for positions whose next token has no label (the
prompt of a chat turn or of a preference pair, padding). Here the output layer runs only at
the positions that predict a labelled token, row by row: a forward pre-hook on the model's
output embeddings hands it those positions' hidden states alone ([1, labelled positions,
hidden]), so whatever the model does after its head (soft-capping, scaling) still applies.
Each labelled token's log-probability is its logit minus the log-sum-exp over the
vocabulary, in fp32.

Two callers: causal-LM evaluation (labelled_nll, the rows run a few at a time so the logits
stay under LOGIT_BUDGET elements) and preference tuning (labelled_logps, policy with its
gradient and the reference under inference mode). A model whose head is not called on the
[rows, length, hidden] states (remote code) gives full logits, and the same positions are
picked from them: the same numbers, without the saving.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

LOGIT_BUDGET = 16 * 1024 * 1024  # logits (elements) one evaluation forward may return: 64 MB in fp32


@dataclass
class NLLOutputs:
    nll: Any  # [batch] float64: summed cross-entropy of each example's labelled tokens
    tokens: Any  # [batch]: how many tokens each example has labelled


@dataclass
class LabelledLogps:
    sums: Any  # [rows] fp32: summed log-probability of each row's labelled tokens (with the graph)
    tokens: Any  # [rows] fp32: how many tokens each row has labelled


def _bare(model):
    model = getattr(model, "module", model)  # DistributedDataParallel
    return model.get_base_model() if hasattr(model, "get_base_model") else model  # peft


@contextlib.contextmanager
def _head_only_at(head, rows: int, length: int, flat, applied: list):
    """While open, `head` (the output embeddings) sees only the hidden states at `flat`
    (indices into the [rows * length] positions); `applied` records that it did."""

    def select(module, args):
        hidden = args[0]
        if hidden.dim() != 3 or tuple(hidden.shape[:2]) != (rows, length):
            return None  # called some other way: left alone, the caller picks from full logits
        applied.append(True)
        # index_select, not a boolean mask: its backward is a gather-add
        return (hidden.reshape(rows * length, -1).index_select(0, flat).unsqueeze(0), *args[1:])

    handle = head.register_forward_pre_hook(select)
    try:
        yield
    finally:
        handle.remove()


def _token_logps(model, inputs: dict, labels):
    """(log-probability [N] fp32 of each labelled next token, row-major; its row [N])."""
    import torch

    rows, length = labels.shape
    following = torch.zeros_like(labels, dtype=torch.bool)
    following[:, :-1] = labels[:, 1:] != -100  # position t predicts labelled token t + 1
    flat = following.reshape(-1).nonzero().squeeze(1)
    targets = labels[:, 1:][labels[:, 1:] != -100]
    if len(flat) == 0:
        return targets.new_zeros(0, dtype=torch.float32), flat
    head, applied = _bare(model).get_output_embeddings(), []
    with _head_only_at(head, rows, length, flat, applied) if head is not None else contextlib.nullcontext():
        logits = model(**inputs).logits
    logits = logits.reshape(-1, logits.shape[-1])
    if not applied:
        logits = logits.index_select(0, flat)
    logits = logits.float()
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1), flat // length


def labelled_logps(model, inputs: dict, labels, budget: int | None = None) -> LabelledLogps:
    """Each row's summed log-probability of its labelled tokens (labels -100 skipped), for the
    model inputs `inputs` (no labels in them). With `budget`, the rows run a few at a time so
    that one forward returns at most `budget` logits (for inference; with a gradient every
    part's logits are kept for the backward anyway, so training runs them at once)."""
    import torch

    counts = (labels[:, 1:] != -100).sum(-1)
    sums = torch.zeros(len(labels), dtype=torch.float32, device=labels.device)
    head = _bare(model).get_output_embeddings() if budget else None
    vocab = (head if head is not None else _bare(model).get_input_embeddings()).weight.shape[0] if budget else 0
    start = 0
    while start < len(labels):
        end, kept = start + 1, int(counts[start])
        while budget and end < len(labels) and (kept + int(counts[end])) * vocab <= budget:
            kept += int(counts[end])
            end += 1
        if not budget:
            end = len(labels)
        part = {k: v[start:end] for k, v in inputs.items()}
        logps, row = _token_logps(model, part, labels[start:end])
        sums = sums.index_add(0, row + start, logps)
        start = end
    return LabelledLogps(sums, counts.to(torch.float32))


def labelled_nll(model, inputs: dict) -> NLLOutputs:
    """Per-example NLL over the labelled next tokens of a causal-LM evaluation batch: what
    metrics.loss.token_nll computes from the full logits, the same positions, the same loss."""
    import torch

    rest = {k: v for k, v in inputs.items() if k != "labels"}
    out = labelled_logps(model, rest, inputs["labels"], budget=LOGIT_BUDGET)
    return NLLOutputs(-out.sums.to(torch.float64), out.tokens.to(torch.long))
