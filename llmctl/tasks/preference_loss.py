"""Preference losses and the log-probabilities they read: plain torch functions of tensors, so a
test can hold them against TRL's on the same numbers.

A batch stacks each pair's chosen sequence, then its rejected one: rows [0, B) are chosen and
[B, 2B) rejected, every row prompt + response, labels -100 on the prompt and the padding. A
response's log-probability is the sum, over its tokens, of log p(token | everything before it);
`lengths` counts those tokens (SimPO and ORPO average by it).

    dpo    -(1 - ls) log σ(β Δ) - ls log σ(-β Δ),  Δ = (π_c - ref_c) - (π_r - ref_r)   (TRL sigmoid; ls: cDPO)
    simpo  -log σ(β (π̄_c - π̄_r) - γ)                                 (π̄: per-token mean; TRL CPO loss_type simpo, cpo_alpha 0)
    orpo   -π̄_c + β (-log σ(log odds(π̄_c) - log odds(π̄_r)))          (β is the paper's λ, as TRL names it)

Rewards, as TRL reports them: dpo β (π - ref); simpo and orpo β π̄.
"""

from __future__ import annotations

import math

METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
           "logps/rejected")


def sequence_logps(logits, labels):
    """(sum of the label tokens' log-probabilities, their count) per row; labels -100 are skipped."""
    import torch
    import torch.nn.functional as F

    shifted = labels[:, 1:]
    mask = shifted != -100
    # Only the labelled positions (the responses, a few in a hundred) are upcast and soft-maxed over
    # the vocabulary: the rest would cost memory and time for a gradient of exactly zero.
    rows = mask.nonzero(as_tuple=True)[0]
    per_token = -F.cross_entropy(logits[:, :-1][mask].float(), shifted[mask], reduction="none")
    sums = torch.zeros(labels.shape[0], dtype=per_token.dtype, device=per_token.device).index_add(0, rows, per_token)
    return sums, mask.sum(-1).to(torch.float32)


def pair_losses(settings, chosen, rejected, chosen_len, rejected_len, ref_chosen=None, ref_rejected=None):
    """(per-pair loss, chosen rewards, rejected rewards) for `settings` (the recipe's preference section)."""
    import torch
    import torch.nn.functional as F

    beta = settings.beta
    if settings.method == "dpo":
        delta = (chosen - ref_chosen) - (rejected - ref_rejected)
        ls = settings.label_smoothing or 0.0
        losses = -F.logsigmoid(beta * delta) * (1 - ls) - F.logsigmoid(-beta * delta) * ls
        return losses, beta * (chosen - ref_chosen).detach(), beta * (rejected - ref_rejected).detach()
    mean_c, mean_r = chosen / chosen_len.clamp(min=1), rejected / rejected_len.clamp(min=1)
    if settings.method == "simpo":
        gamma = 0.5 if settings.simpo_gamma is None else settings.simpo_gamma
        losses = -F.logsigmoid(beta * (mean_c - mean_r) - gamma)
    else:  # orpo
        log_odds = (mean_c - mean_r) - (torch.log1p(-torch.exp(mean_c)) - torch.log1p(-torch.exp(mean_r)))
        losses = -mean_c - beta * F.logsigmoid(log_odds)
    return losses, beta * mean_c.detach(), beta * mean_r.detach()


def summary(losses, chosen_rewards, rejected_rewards, chosen, rejected) -> dict[str, float]:
    """TRL's names for the means over a batch (or a whole split)."""
    return {"loss": float(losses.mean()),
            "rewards/chosen": float(chosen_rewards.mean()), "rewards/rejected": float(rejected_rewards.mean()),
            "rewards/accuracies": float((chosen_rewards > rejected_rewards).float().mean()),
            "rewards/margins": float((chosen_rewards - rejected_rewards).mean()),
            "logps/chosen": float(chosen.detach().mean()), "logps/rejected": float(rejected.detach().mean())}


LOG2 = math.log(2)
