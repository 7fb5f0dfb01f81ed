"""Attention for CPU training: the same function as sdpa, about twice as fast.

With dropout on, torch's scaled_dot_product_attention on CPU takes its "math" path: a
Mersenne-Twister Bernoulli draw per attention probability, single-threaded, and a
softmax in bf16 under autocast, which is slower than in fp32. For a MiniLM step on SST-2
that was about a tenth of the step. Without dropout (decoder LMs) it takes the flash
kernel, whose CPU backward is slow at training lengths: for SmolLM2 at batch 8 x 90
tokens, 8.5 ms of backward per layer against 0.85 ms forward, a sixth of the LoRA step.
Here the scores come from the same matmul, the softmax runs in fp32 (cheaper here, and
more exact), the mask is added as a bias (whose backward is free, unlike masked_fill's)
and the dropout mask is llmctl's PCG64 one (train/dropout.py, seeded from torch's
generator, so runs stay reproducible). Grouped-query heads (Llama, Qwen2, SmolLM2) share
their key/value head through a broadcast matmul instead of repeated copies.

Everything else is handed to transformers' own sdpa function unchanged: evaluation and
generation (no gradient, or a module in eval mode), non-CPU tensors and options this
module does not know. The name is registered with transformers' attention and mask
interfaces and set on the model being trained; transformers keeps `_attn_implementation`
out of `config.json`, so a saved model loads with sdpa as usual.
"""

from __future__ import annotations

NAME = "llmctl_cpu_train"
# kwargs this function understands (or that need nothing from it); any other one with a
# value sends the call to sdpa, so a new transformers option is never silently dropped.
_KNOWN = {"is_causal", "position_bias", "output_attentions", "position_ids", "cache_position",
          "past_key_values", "use_cache", "return_dict"}


def _attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
               is_causal=None, position_bias=None, **kwargs):
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    unknown = any(v is not None and v is not False for k, v in kwargs.items() if k not in _KNOWN)
    training = getattr(module, "training", False) and torch.is_grad_enabled()
    if (not training or query.device.type != "cpu" or unknown or kwargs.get("output_attentions")
            or query.shape[-2] == 0 or query.shape[1] % key.shape[1]):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, position_bias=position_bias, **kwargs)
    from llmctl.train.speedups.dropout import fast_dropout

    batch, heads, q_len, width = query.shape
    kv_heads, kv_len = key.shape[1], key.shape[-2]
    # query heads grouped by the key/value head they share: [batch, kv heads, group, q, d]
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, q_len, width)
    scale = scaling if scaling is not None else width ** -0.5
    scores = torch.matmul(grouped, key.unsqueeze(2).transpose(-1, -2)).float()
    if scale != 1.0:
        scores.mul_(scale)
    if position_bias is not None:
        scores = scores + _per_group(position_bias, kv_heads)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", False)
    if attention_mask is None and causal and q_len > 1:
        # sdpa's mask builder leaves out a causal mask it can express as is_causal=True
        attention_mask = torch.ones(q_len, kv_len, dtype=torch.bool, device=query.device).tril(kv_len - q_len)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            # finfo.min, not -inf: a fully masked row (a padding query) stays finite, as in eager
            attention_mask = torch.zeros(attention_mask.shape, dtype=scores.dtype, device=query.device).masked_fill_(
                ~attention_mask, torch.finfo(scores.dtype).min)
        scores = scores + _per_group(attention_mask, kv_heads)
    probs = torch.softmax(scores, dim=-1)
    if dropout > 0.0:
        probs = fast_dropout(probs, dropout)
    out = torch.matmul(probs.to(value.dtype), value.unsqueeze(2)).reshape(batch, heads, q_len, width)
    return out.transpose(1, 2).contiguous(), None


def _per_group(bias, kv_heads: int):
    """A [batch or 1, heads or 1, q, k] bias shaped like the grouped scores,
    [batch or 1, kv heads or 1, group or 1, q, k]; a 2-D [q, k] one broadcasts as it is."""
    if bias.dim() != 4:
        return bias
    if bias.shape[1] == 1:
        return bias.unsqueeze(1)
    return bias.reshape(bias.shape[0], kv_heads, bias.shape[1] // kv_heads, *bias.shape[2:])


def use_fast_attention(model) -> bool:
    """Switch a transformers model from sdpa to this attention; True when switched.

    Only models that dispatch through the attention interface and currently use sdpa
    (the default) are switched; eager and flash choices made on purpose are left alone.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    AttentionInterface.register(NAME, _attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # the same masks sdpa gets
    try:
        model.set_attn_implementation(NAME)
    except (ValueError, KeyError, NotImplementedError):
        return False
    return config._attn_implementation == NAME
