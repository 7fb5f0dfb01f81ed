"""Frozen linear weights stored in bf16 for a bf16-autocast run on CPU (LoRA's base model).

Under autocast every linear layer casts its fp32 weight to bf16 at each call, and the
cast copy is what the matmul's backward keeps. autocast caches those casts only for
weights that require a gradient, so under LoRA, where the base model is frozen, each
step re-casts all of it (about a tenth of a SmolLM2 LoRA step) and holds a bf16 copy of
every base weight until its backward, beside the fp32 original. Casting the frozen
weights once gives the matmuls the very same bf16 values (the cast is deterministic, so
the forward and every gradient are bitwise the same) and halves what the base model
takes in memory.

Only frozen nn.Linear layers whose weight no other module shares are cast: a weight tied
to the input embedding (which autocast does not cast) keeps fp32, and anything that
trains keeps its fp32 master. A LoRA run saves and checkpoints the adapter alone, and
`llmctl export` merges it into the base read from disk, so the fp32 base is not needed
in the training process.
"""

from __future__ import annotations

from collections import Counter


def cast_frozen_linears(model, dtype) -> int:
    """Store the weight and bias of every frozen, unshared nn.Linear in `dtype`; returns how many."""
    import torch

    owners = Counter(id(p) for module in model.modules() for p in module.parameters(recurse=False))
    cast = 0
    for module in model.modules():
        if type(module) is not torch.nn.Linear:
            continue
        params = [p for p in (module.weight, module.bias) if p is not None]
        if any(p.requires_grad or owners[id(p)] > 1 or not p.is_floating_point() for p in params):
            continue
        for p in params:
            p.data = p.data.to(dtype)
        cast += 1
    return cast


def store_frozen_linears_in_bf16(model) -> bool:
    """The speed-up for a bf16-autocast run; True when any weight was cast. T5 is left alone: it
    casts its activations to its `wo` weight's dtype itself, so a bf16 `wo` would change them."""
    import torch

    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        return False
    return cast_frozen_linears(model, torch.bfloat16) > 0
