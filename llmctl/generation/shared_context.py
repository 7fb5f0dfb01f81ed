"""Score every choice of a prompt with one pass over the prompt (llmctl.generation.loglikelihood).

The model reads context + choice[:-1] for each choice; all of them start with the same context
tokens (the harness's context encoding, shared by its choices). So each batch of contexts runs
once, left-padded and length-sorted (longest first, as lm-evaluation-harness sorts), with
explicit positions so that padding changes no score:

- the context's last position predicts every choice's first token: a choice of one token (a
  sentiment word, a letter A-D) is scored from it alone, with no second pass;
- the keys/values of the context (its cache) are then repeated once per choice of two or more
  tokens, and only those choices' tokens run through the model, instead of context + choice again
  for each choice.

Only the logits that score a token are computed (the last context position, the choice tokens);
the harness computes the whole vocabulary at every position. Scores equal scoring each choice
alone up to float rounding (the same tokens, in another batch shape).
"""

from __future__ import annotations

import copy


def score_shared(model, requests: list, which: list[int], batch_size: int, device: str, sums) -> None:
    """Score requests `which` (each fits the model whole, every choice at least one token) into
    `sums` [requests, choices]."""
    import os

    import torch

    if not which:
        return
    order = sorted(which, key=lambda i: len(requests[i].context), reverse=True)
    # The tokens every context starts with (an instruction, "Review:", a bos), less one so that each
    # context keeps a token of its own, run once; each batch continues from their cache.
    shared = os.path.commonprefix([requests[i].context for i in order])[:len(requests[order[-1]].context) - 1]
    prefix = None
    if shared:
        prefix = model(input_ids=torch.tensor([shared], device=device), use_cache=True, logits_to_keep=1).cache
    for b in range(0, len(order), batch_size):
        chunk = order[b:b + batch_size]
        _score_batch(model, [requests[i].continuations for i in chunk],
                     [requests[i].context[len(shared):] for i in chunk], chunk, (len(shared), prefix),
                     batch_size, device, sums)


def _left_padded(rows: list[list[int]], device: str):
    import torch

    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    return ids, mask


def _score_batch(model, choices: list, contexts: list, index: list[int], prefix: tuple, batch_size: int,
                 device: str, sums) -> None:
    """One batch: `contexts` (after the shared prefix, whose length and cache `prefix` holds) and
    each context's `choices` (token lists)."""
    import torch

    ids, mask = _left_padded(contexts, device)
    shared, cache = prefix
    longer = [(row, j, c) for row, cs in enumerate(choices) for j, c in enumerate(cs) if len(c) > 1]
    padded = bool((mask == 0).any())
    positions = shared + (mask.cumsum(-1) - 1).clamp(min=0)
    if cache is not None:
        cache = copy.deepcopy(cache)
        cache.batch_repeat_interleave(len(contexts))
        # the padding sits between the shared tokens and each context's own: masked out
        mask = torch.cat([torch.ones(len(contexts), shared, dtype=mask.dtype, device=device), mask], dim=1)
    # A batch of equal lengths needs no mask: the plain causal attention, the fastest kernel.
    past = {"cache": cache} if cache is not None else {}
    out = model(input_ids=ids, attention_mask=mask if padded else None, position_ids=positions, **past,
                logits_to_keep=1, use_cache=bool(longer))
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1).cpu()
    for row, (cs, i) in enumerate(zip(choices, index)):
        for j, c in enumerate(cs):
            sums[i, j] = first[row, c[0]].item()
    lengths = positions[:, -1] + 1  # the position of each choice's first token
    if not longer:
        return
    # The rest of each longer choice, after its context's cache, at most a batch of choices at a
    # time (the logits of every choice token are kept): the choice's tokens but its last are read,
    # right-padded after the context, each predicting the next one.
    for k in range(0, len(longer), batch_size):
        part = longer[k:k + batch_size]
        cache = out.cache if k + batch_size >= len(longer) else copy.deepcopy(out.cache)
        for (row, j, _), value in zip(part, _continue(model, cache, part, mask, lengths, device)):
            sums[index[row], j] += value


def _continue(model, cache, part: list, mask, lengths, device: str) -> list[float]:
    """Summed log-probabilities of the choices' tokens after the first, read after the cached context."""
    import torch

    rows = torch.tensor([row for row, _, _ in part], device=device)
    cache.reorder_cache(rows)
    width = max(len(c) for _, _, c in part) - 1
    reads = torch.tensor([c[:-1] + [0] * (width + 1 - len(c)) for _, _, c in part], device=device)
    targets = torch.tensor([c[1:] + [0] * (width + 1 - len(c)) for _, _, c in part], device=device)
    scored = torch.tensor([[1] * (len(c) - 1) + [0] * (width + 1 - len(c)) for _, _, c in part], device=device)
    positions = lengths[rows, None] + torch.arange(width, device=device)[None, :]
    logits = model(input_ids=reads, attention_mask=torch.cat([mask[rows], scored], dim=1), position_ids=positions,
                   cache=cache, use_cache=False).logits
    picked = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None])[..., 0]
    return (picked * scored).sum(-1).double().cpu().tolist()
