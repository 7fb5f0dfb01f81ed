"""The optimizer (AdamW fused or foreach, Adafactor, SGD) with the usual no-decay groups, the
warm-up + decay schedule (transformers' schedules), and gradient checkpointing."""

from __future__ import annotations

import math

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "layernorm.weight", "ln_", "norm.weight")


def build_optimizer(model, cfg):
    """train.optimizer over two groups: biases and normalisation weights get no weight decay
    (as in BERT's recipe)."""
    import torch

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if any(key in name for key in NO_DECAY) else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "adafactor":
        from transformers.optimization import Adafactor

        # A fixed learning rate driven by train.lr_scheduler, as the Trainer's optim="adafactor".
        return Adafactor(groups, lr=cfg.learning_rate, scale_parameter=False, relative_step=False, warmup_init=False)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.learning_rate, momentum=cfg.sgd_momentum)
    # The fused kernel updates all parameters in one pass: on CPU it is ~10x faster than
    # the per-tensor loop, which matters for small models where the step is a large share.
    # adamw_foreach: the multi-tensor kernel, for devices or dtypes the fused one lacks.
    fused = cfg.optimizer == "adamw"
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                             eps=cfg.adam_epsilon, fused=fused, foreach=None if fused else True)


def lr_factor(step: int, total: int, warmup: int, kind: str, floor: float = 0.0) -> float:
    """Learning-rate multiplier at optimizer step `step` (0-based), as transformers' schedules; the
    decay ends at `floor` (min_learning_rate / learning_rate, nanoGPT's min_lr) instead of 0."""
    if step < warmup:
        return step / max(1, warmup)
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "cosine":
        decay = max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    else:
        decay = max(0.0, 1.0 - progress)
    return floor + (1.0 - floor) * decay


# train.lr_scheduler -> transformers' schedule name and the recipe keys it takes
_SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup",
              "cosine_with_restarts": "cosine_with_restarts", "polynomial": "polynomial",
              "warmup_stable_decay": "warmup_stable_decay"}


def warmup_steps(cfg, total_steps: int) -> int:
    return cfg.warmup_steps if cfg.warmup_steps is not None else math.ceil(total_steps * cfg.warmup_ratio)


def build_scheduler(optimizer, cfg, total_steps: int):
    """The warm-up + decay schedule: linear, cosine and constant llmctl's own (they may end at
    min_learning_rate), the others transformers' (each a LambdaLR stepped once per optimizer step: its state is just the
    step count, so a resumed run continues it exactly)."""
    import torch
    from transformers.optimization import get_scheduler

    warmup = warmup_steps(cfg, total_steps)
    if cfg.lr_scheduler in ("linear", "cosine", "constant"):
        # Ours, not get_scheduler's: these three may end at min_learning_rate (nanoGPT's min_lr).
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, total_steps, warmup, cfg.lr_scheduler,
                                              cfg.min_learning_rate / cfg.learning_rate)
        )
    extra = {}
    if cfg.lr_scheduler == "cosine_with_restarts":
        extra = {"num_cycles": cfg.lr_cycles}
    elif cfg.lr_scheduler == "polynomial":
        extra = {"power": cfg.lr_power, "lr_end": 0.0}
    elif cfg.lr_scheduler == "warmup_stable_decay":
        decay = min(math.ceil(total_steps * cfg.lr_decay_ratio), max(0, total_steps - warmup))
        extra = {"num_decay_steps": decay, "num_stable_steps": max(0, total_steps - warmup - decay)}
        return get_scheduler(_SCHEDULES[cfg.lr_scheduler], optimizer, num_warmup_steps=warmup,
                             scheduler_specific_kwargs=extra)
    return get_scheduler(_SCHEDULES[cfg.lr_scheduler], optimizer, num_warmup_steps=warmup,
                         num_training_steps=total_steps, scheduler_specific_kwargs=extra)


def gradient_checkpointing(model) -> bool:
    """Recompute activations in the backward pass instead of keeping them (train.gradient_checkpointing):
    less memory, about a third more compute. False when the model cannot."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        return False
    # Non-reentrant: works with frozen inputs (LoRA) without enable_input_require_grads.
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return True


def clip_gradients(accelerator, parameters, max_norm: float):
    """Scale gradients so their global L2 norm is at most `max_norm`; returns the norm.

    The same arithmetic as torch.nn.utils.clip_grad_norm_ (which accelerate calls), except
    that it skips multiplying every gradient by 1.0 when the norm is already small enough:
    bitwise the same result, one pass less over all gradients on the steps that do not clip.
    """
    import torch

    accelerator.unscale_gradients()  # fp16: clip the true gradients, as accelerate does
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        torch._foreach_mul_(grads, coef)
    return total
