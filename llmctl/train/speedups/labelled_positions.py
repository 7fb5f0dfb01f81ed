"""BERT token classifiers in training: finish the last layer only where there is a label.

The loss of BertForTokenClassification reads the classifier at positions whose label is
not -100; [CLS], [SEP], padding and the later sub-tokens of a word (about 30% of the
positions of a CoNLL batch) feed nothing, so their last-layer output gets a gradient of
exactly zero. Here, while training with labels, the last layer computes attention for
every position as before (every position is a key and a value) but the attention
output, feed-forward block, dropout, layer norm and classifier for labelled positions
only, and the loss is the same mean cross-entropy over the same positions.

The logits the model returns in that case hold zeros where there is no label: the
training loop reads only the loss. Evaluation, prediction and any call without labels
run the stock forward.
"""

from __future__ import annotations

import types

_KEEP = "_llmctl_labelled_positions"  # set on the last layer for one forward call


def _last_layer_forward(layer, hidden_states, attention_mask=None, *args, **kwargs):
    keep = layer.__dict__.get(_KEEP)
    if keep is None:
        return type(layer).forward(layer, hidden_states, attention_mask, *args, **kwargs)
    context, _ = layer.attention.self(hidden_states, attention_mask=attention_mask, **kwargs)
    width = hidden_states.shape[-1]
    # index_select, not boolean indexing: its backward is a gather-add, not a serial index_put
    attention_output = layer.attention.output(context.reshape(-1, width).index_select(0, keep),
                                              hidden_states.reshape(-1, width).index_select(0, keep))
    return layer.feed_forward_chunk(attention_output)  # [labelled positions, hidden]


def _model_forward(model, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                   inputs_embeds=None, labels=None, **kwargs):
    # the shortcut only for a training call with labels and nothing unusual
    shortcut = model.training and labels is not None and not any(v is not None for v in kwargs.values())
    if not shortcut:
        return type(model).forward(model, input_ids, attention_mask, token_type_ids, position_ids,
                                   inputs_embeds, labels, **kwargs)
    import torch
    from transformers.modeling_outputs import TokenClassifierOutput

    keep = labels.view(-1).ne(-100).nonzero().squeeze(1)  # flat indices of labelled positions
    last = model.bert.encoder.layer[-1]
    last.__dict__[_KEEP] = keep
    try:
        hidden = model.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            position_ids=position_ids, inputs_embeds=inputs_embeds, return_dict=True).last_hidden_state
    finally:
        last.__dict__.pop(_KEEP, None)
    kept_logits = model.classifier(model.dropout(hidden))
    loss = torch.nn.functional.cross_entropy(kept_logits.float(), labels.view(-1).index_select(0, keep))
    logits = kept_logits.new_zeros(labels.numel(), model.num_labels)
    logits[keep] = kept_logits.detach()
    logits = logits.view(*labels.shape, model.num_labels)
    return TokenClassifierOutput(loss=loss, logits=logits)


def finish_labelled_positions_only(model) -> bool:
    """Switch an encoder-only BertForTokenClassification; True when switched."""
    from transformers import BertForTokenClassification
    from transformers.models.bert.modeling_bert import BertLayer

    if type(model) is not BertForTokenClassification:
        return False
    config, last = model.config, model.bert.encoder.layer[-1]
    if config.is_decoder or config.add_cross_attention or type(last) is not BertLayer or last.chunk_size_feed_forward:
        return False
    last.forward = types.MethodType(_last_layer_forward, last)
    model.forward = types.MethodType(_model_forward, model)
    return True
