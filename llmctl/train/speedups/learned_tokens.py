"""Decoder LMs in training: run the LM head only where a token is learned.

A causal LM's loss reads the logits at position t only when token t + 1 has a label.
With chat data the loss covers the assistant's answer alone (llmctl.tasks.chat), so for
SST-2 written as chat turns about 3 positions in 60 are learned. Yet the stock forward
projects every position onto the whole vocabulary (49,152 words for SmolLM2), upcasts
those logits to fp32 and takes a log-softmax over them: a fifth of the step's matrix
work and, at batch 8, several hundred MB of logits held for the backward pass. Positions
whose logits feed no loss get a gradient of exactly zero, so leaving them out changes
nothing: here the body runs as before, the LM head runs on the learned positions only,
and the loss is the same mean cross-entropy over the same tokens.

Such a call returns the learned positions' logits only, [learned, vocab] (the training
loop reads only the loss). Evaluation, generation and any call without labels or with an option this
module does not know run the stock forward, as does a batch where most positions are
learned (plain-text causal LM), which has nothing to gain.
"""

from __future__ import annotations

import types

# CausalLM classes whose forward is exactly body -> lm_head -> ForCausalLMLoss (no logit
# scaling or soft-capping between them), checked against the installed transformers.
SUPPORTED = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Phi3ForCausalLM",
             "SmolLM3ForCausalLM", "GPT2LMHeadModel", "GPTNeoXForCausalLM"}
# Below this share of learned positions the index work costs less than the head it saves.
MAX_LEARNED_SHARE = 0.5


def _forward(model, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
             **kwargs):
    import torch

    stock = type(model).forward
    # peft's wrapper passes output_attentions=None and the like: only a value means an option
    if (not model.training or labels is None or not torch.is_grad_enabled()
            or any(v is not None for v in kwargs.values())):
        return stock(model, input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                     inputs_embeds=inputs_embeds, labels=labels, **kwargs)
    from transformers.modeling_outputs import CausalLMOutputWithPast

    # the label of position t is token t + 1 (ForCausalLMLoss pads the end with -100 the same way)
    targets = torch.nn.functional.pad(labels, (0, 1), value=-100)[..., 1:].reshape(-1)
    keep = targets.ne(-100).nonzero().squeeze(1)
    if keep.numel() > MAX_LEARNED_SHARE * targets.numel():
        return stock(model, input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                     inputs_embeds=inputs_embeds, labels=labels)
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                              inputs_embeds=inputs_embeds, use_cache=False).last_hidden_state
    # index_select, not boolean indexing: its backward is a gather-add, not a serial index_put
    learned = hidden.reshape(-1, hidden.shape[-1]).index_select(0, keep)
    logits = model.get_output_embeddings()(learned)
    loss = torch.nn.functional.cross_entropy(logits.float(), targets.index_select(0, keep))
    return CausalLMOutputWithPast(loss=loss, logits=logits)


def project_learned_tokens_only(model) -> bool:
    """Switch a supported causal LM; True when switched."""
    if type(model).__name__ not in SUPPORTED or model.get_output_embeddings() is None:
        return False
    model.forward = types.MethodType(_forward, model)
    return True
