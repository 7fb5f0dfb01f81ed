"""Causal-LM evaluation losses without full-vocabulary logits for every position.

The stock forward projects every position of an evaluation batch onto the whole vocabulary
and upcasts it to fp32: for SmolLM2 (49,152 words) at eval batch 64 x 256 tokens that is
3.2 GB of logits, most of them for positions whose next token has no label (the prompt of a
chat turn, padding). Here the model returns logits only at the positions that predict a
labelled token in some row of the batch (transformers' `logits_to_keep` with an index
tensor), and the batch is run a few rows at a time so those logits stay under LOGIT_BUDGET
elements. Each example's summed cross-entropy and token count are what metrics.loss.token_nll
computes from the full logits: the same positions, the same loss.

A model whose forward takes no `logits_to_keep` (remote code) runs the stock forward.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

LOGIT_BUDGET = 16 * 1024 * 1024  # logits (elements) one forward may return: 64 MB in fp32


@dataclass
class NLLOutputs:
    nll: Any  # [batch] float64: summed cross-entropy of each example's labelled tokens
    tokens: Any  # [batch]: how many tokens each example has labelled


def _bare(model):
    model = getattr(model, "module", model)  # DistributedDataParallel
    return model.get_base_model() if hasattr(model, "get_base_model") else model  # peft


def keeps_logits_selectively(model) -> bool:
    forward = getattr(_bare(model), "forward", None)
    return forward is not None and "logits_to_keep" in inspect.signature(forward).parameters


def labelled_nll(model, inputs: dict) -> NLLOutputs | None:
    """Per-example NLL over the labelled next tokens of a causal-LM batch; None when the model
    cannot return logits at chosen positions (the caller runs the stock forward)."""
    import torch
    import torch.nn.functional as F

    if not keeps_logits_selectively(model):
        return None
    labels = inputs["labels"]
    target = labels[:, 1:]
    tokens = (target != -100).sum(-1)
    nll = torch.zeros(len(labels), dtype=torch.float64, device=labels.device)
    keep = (target != -100).any(0).nonzero().flatten()  # positions t whose token t + 1 is labelled somewhere
    if len(keep) == 0:
        return NLLOutputs(nll, tokens)
    vocab = _bare(model).get_output_embeddings().weight.shape[0]
    rows = max(1, LOGIT_BUDGET // (len(keep) * vocab))
    rest = {k: v for k, v in inputs.items() if k != "labels"}
    picked = target[:, keep]
    for start in range(0, len(labels), rows):
        part = {k: v[start:start + rows] for k, v in rest.items()}
        logits = model(**part, logits_to_keep=keep).logits  # [rows, kept positions, vocab]
        for i in range(len(logits)):
            if tokens[start + i]:
                nll[start + i] = F.cross_entropy(logits[i].float(), picked[start + i], ignore_index=-100,
                                                 reduction="sum")
        del logits
    return NLLOutputs(nll, tokens)
