"""Preference losses: plain torch functions of the responses' log-probabilities (summed over
their tokens by llmctl.tasks.labelled_nll), so a test can hold them against TRL's on the same
numbers.

A batch stacks each pair's chosen sequence, then its rejected one: rows [0, B) are chosen and
[B, 2B) rejected, every row prompt + response, labels -100 on the prompt and the padding. A
response's log-probability is the sum, over its tokens, of log p(token | everything before it);
`lengths` counts those tokens (SimPO and ORPO average by it).

    dpo    -(1 - ls) log σ(β Δ) - ls log σ(-β Δ),  Δ = (π_c - ref_c) - (π_r - ref_r)   (TRL sigmoid; ls: cDPO)
    simpo  -log σ(β (π̄_c - π̄_r) - γ)                                 (π̄: per-token mean; TRL CPO loss_type simpo, cpo_alpha 0)
    orpo   NLL_c + β (-log σ(log odds(π̄_c) - log odds(π̄_r)))          (β is the paper's λ, as TRL names it)

ORPO's NLL_c is, as in TRL's ORPOTrainer, the mean over all the batch's chosen tokens (not a mean
of per-pair means): pair i's share is -π_c,i / mean(chosen lengths), so the batch mean of the
per-pair losses is Σ -π_c / Σ |c|. Unlike TRL, whose NLL also covers the prompt, only the
response tokens are learned (the prompt never is, for every method here).

Rewards, as TRL reports them: dpo β (π - ref); simpo and orpo β π̄.
"""

from __future__ import annotations

import math

METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
           "logps/rejected")
LOG2 = math.log(2)


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
        log_odds = (mean_c - mean_r) - (_log1mexp(mean_c) - _log1mexp(mean_r))
        nll = -chosen / chosen_len.clamp(min=1).mean()  # the batch's per-token mean, shared out by pair
        losses = nll - beta * F.logsigmoid(log_odds)
    return losses, beta * mean_c.detach(), beta * mean_r.detach()


def _log1mexp(x):
    """log(1 - exp(x)) for x < 0, without the cancellation near 0 (TRL's log1mexp)."""
    import torch

    return torch.where(x < -LOG2, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def summary(losses, chosen_rewards, rejected_rewards, chosen, rejected) -> dict[str, float]:
    """TRL's names for the means over a batch (or a whole split)."""
    return {"loss": float(losses.mean()),
            "rewards/chosen": float(chosen_rewards.mean()), "rewards/rejected": float(rejected_rewards.mean()),
            "rewards/accuracies": float((chosen_rewards > rejected_rewards).float().mean()),
            "rewards/margins": float((chosen_rewards - rejected_rewards).mean()),
            "logps/chosen": float(chosen.detach().mean()), "logps/rejected": float(rejected.detach().mean())}

