"""Prefilling several joining prompts in one forward pass, packed end to end.

A prompt prefilled alone is a product over few rows: on 2 AVX2 cores a 48-token GPT-2-small
prefill ran at 3.4 ms a token, 384 tokens in one pass at 1.4 ms. So the prompts that join the
batch at the same step are laid end to end in one row, each with its own positions and a mask that
lets a token see only the earlier tokens of its own prompt, and the resulting cache is cut back into
one left-padded row per prompt (what the batch splices in). Padding the prompts to the longest
instead would have spent up to twice the work on padding.

Only models whose every layer attends over the whole past (the mask is one block-diagonal causal
mask) and that run PyTorch's SDPA (which takes such a mask as it is) are packed; a sliding window
or another attention kernel prefills each prompt alone, as before. Packing changes the rounding
of a prompt's values at the 1e-6 level (as batching does: docs/commands/serve.md).
"""

from __future__ import annotations

# Tokens per packed pass: past about this, the products gain little and attention over the whole
# packed row (which the mask mostly discards) grows with its square.
PACK_TOKENS = 512


def packable(model) -> bool:
    from llmctl.serve.cache import layer_types

    return (type(model).__module__.startswith("transformers.") and model.config._attn_implementation == "sdpa"
            and all(kind == "full_attention" for kind in layer_types(model)))


def groups(seqs: list) -> list[list]:
    """Consecutive runs of the joining sequences, each at most PACK_TOKENS tokens (or one prompt)."""
    out, size = [], 0
    for seq in seqs:
        if out and size + len(seq.prompt) <= PACK_TOKENS:
            out[-1].append(seq)
            size += len(seq.prompt)
        else:
            out.append([seq])
            size = len(seq.prompt)
    return out


def packed(model, seqs: list, cache, device: str):
    """Prefill `seqs` in one pass into `cache` (empty), pick each one's first token, and return
    (cache, mask): the cache cut into one row per prompt, left-padded to the longest, and its
    (rows, longest) mask, 1 for a real token."""
    import torch

    lengths = [len(seq.prompt) for seq in seqs]
    ids = torch.tensor([[token for seq in seqs for token in seq.prompt]], device=device)
    positions = torch.cat([torch.arange(n, device=device) for n in lengths])[None]
    segment = torch.cat([torch.full((n,), i, device=device) for i, n in enumerate(lengths)])
    order = torch.arange(len(segment), device=device)
    allowed = (segment[:, None] == segment[None, :]) & (order[:, None] >= order[None, :])
    ends = torch.tensor(lengths, device=device).cumsum(0)
    out = model(input_ids=ids, attention_mask=allowed[None, None], position_ids=positions, cache=cache,
                use_cache=True, logits_to_keep=ends - 1)
    for row, seq in enumerate(seqs):
        seq.pick(out.logits[0, row].float())
    longest = max(lengths)
    starts = [int(end) - n for end, n in zip(ends, lengths)]
    for layer in out.cache.layers:
        layer.keys = _rows(layer.keys, starts, lengths, longest)
        layer.values = _rows(layer.values, starts, lengths, longest)
    mask = torch.zeros(len(seqs), longest, dtype=torch.long, device=device)
    for row, n in enumerate(lengths):
        mask[row, longest - n:] = 1
    return out.cache, mask


def _rows(tensor, starts: list[int], lengths: list[int], longest: int):
    """(1, heads, packed, dim) -> (prompts, heads, longest, dim), each prompt's columns at the right."""
    import torch

    rows = tensor.new_zeros(len(starts), tensor.shape[1], longest, tensor.shape[3])
    for row, (start, n) in enumerate(zip(starts, lengths)):
        rows[row, :, longest - n:] = tensor[0, :, start:start + n]
    return rows
