"""The evaluation loss, exactly: every task keeps a summed loss and a count per example, and the
mean is taken once over the whole split. A mean of batch means would weigh a short last batch
(or a batch of short targets) like a full one, and would change with the batch size or the
number of processes; sums and counts do not.
"""

from __future__ import annotations


def exact_mean(sums, counts) -> float:
    """Sum of per-example losses over the sum of what they count (tokens, or 1 per example)."""
    total = sum(float(x) for x in sums)
    count = sum(int(x) for x in counts)
    return total / max(count, 1)


def token_nll(logits, labels, shift: bool) -> dict:
    """Per-example summed cross-entropy and count of labelled tokens (-100 = ignored), as torch
    tensors for `outputs_to_keep`; their `exact_mean` is the token-weighted loss.

    `shift` for causal models, whose position t predicts token t+1. One row at a time, so a
    large vocabulary never needs a second [batch, length, vocab] float copy.
    """
    import torch
    import torch.nn.functional as F

    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    nll = torch.zeros(len(labels), dtype=torch.float64, device=labels.device)
    count = (labels != -100).sum(-1)
    for i in range(len(labels)):
        if count[i]:
            nll[i] = F.cross_entropy(logits[i].float(), labels[i], ignore_index=-100, reduction="sum")
    return {"nll": nll, "tokens": count}


def cross_entropy(logits, gold):
    """-log softmax(logits)[gold] in float64 (numpy), over the last axis: one value per row of a
    [n, classes] array, or a single float for one row. Stable for any logit size."""
    import numpy as np

    z = np.asarray(logits, dtype=np.float64)
    top = z.max(-1, keepdims=True)
    log_norm = (top + np.log(np.exp(z - top).sum(-1, keepdims=True)))[..., 0]
    picked = np.take_along_axis(z, np.asarray(gold)[..., None], -1)[..., 0]
    return log_norm - picked
