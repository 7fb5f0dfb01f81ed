"""Skip the last-layer work a BERT classification head never reads.

BertForSequenceClassification classifies from the pooler, which reads only the first
([CLS]) position of the last layer. Every other position of that layer is computed and
then thrown away: its gradient is exactly zero. So the last layer here computes keys
and values for every position (the first token attends to all of them) but the query,
attention output, feed-forward block, dropout and layer norm for the first position
only: the same function, about 14% fewer matrix-multiply FLOPs in a 6-layer MiniLM.

Only exact matches are switched: an encoder-only BertForSequenceClassification whose
last layer is a plain BertLayer (no cross-attention, no feed-forward chunking).
"""

from __future__ import annotations

import types


def _first_position_forward(layer, hidden_states, attention_mask=None, *args, **kwargs):
    """BertLayer.forward, for the first position's output only ([batch, 1, hidden])."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    attention = layer.attention.self
    batch = hidden_states.shape[0]
    first = hidden_states[:, :1]
    heads = (batch, -1, attention.num_attention_heads, attention.attention_head_size)
    query = attention.query(first).view(*heads).transpose(1, 2)
    key = attention.key(hidden_states).view(*heads).transpose(1, 2)
    value = attention.value(hidden_states).view(*heads).transpose(1, 2)
    if attention_mask is not None and attention_mask.dim() == 4:
        attention_mask = attention_mask[:, :, :1, :]  # the first query's row
    interface = ALL_ATTENTION_FUNCTIONS.get_interface(attention.config._attn_implementation, None)
    if interface is None:  # "eager" is not in the registry; the model module has it
        from transformers.models.bert.modeling_bert import eager_attention_forward as interface
    context, _ = interface(attention, query, key, value, attention_mask,
                           dropout=attention.dropout.p if attention.training else 0.0, scaling=attention.scaling)
    attention_output = layer.attention.output(context.reshape(batch, 1, -1), first)
    return layer.feed_forward_chunk(attention_output)


def compute_first_position_only(model) -> bool:
    """Switch the last encoder layer of a BERT sequence classifier; True when switched."""
    from transformers import BertForSequenceClassification
    from transformers.models.bert.modeling_bert import BertLayer

    if type(model) is not BertForSequenceClassification:
        return False
    config = model.config
    last = model.bert.encoder.layer[-1]
    if (config.is_decoder or config.add_cross_attention or type(last) is not BertLayer
            or last.chunk_size_feed_forward or model.bert.pooler is None):
        return False
    last.forward = types.MethodType(_first_position_forward, last)
    return True
