"""BERT masked-LM training: run the prediction head only where a token was picked for the loss.

BertForMaskedLM scores every position against the whole vocabulary although its loss reads
only the ~15% of positions with a label. For MiniLM (30,522 x 384) that head costs about as much
as the six encoder layers, and its [batch, length, vocab] scores (500 MB in fp32 at 32 x 128)
with their gradient dominate a step's memory. The head works position by position (dense,
activation, layer norm, decoder), so applying it to the labelled positions alone gives exactly
their scores, and the loss is the same mean cross-entropy over the same positions; the other
positions' scores never reach the loss, so no gradient changes.

In that case (training, with labels) the returned logits are the labelled positions' only,
[labelled, vocab]: the training loop reads the loss alone. Evaluation, prediction and calls
without labels run the stock forward.
"""

from __future__ import annotations

import types


def _model_forward(model, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                   inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None, labels=None,
                   **kwargs):
    # the shortcut only for a training call with labels and nothing unusual
    shortcut = (model.training and labels is not None and encoder_hidden_states is None
                and not any(v is not None for v in kwargs.values()))
    if not shortcut:
        return type(model).forward(model, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                   encoder_hidden_states, encoder_attention_mask, labels, **kwargs)
    import torch.nn.functional as F
    from transformers.modeling_outputs import MaskedLMOutput

    hidden = model.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                        position_ids=position_ids, inputs_embeds=inputs_embeds, return_dict=True).last_hidden_state
    keep = labels.view(-1).ne(-100).nonzero().squeeze(1)  # flat indices of labelled positions
    scores = model.cls(hidden.reshape(-1, hidden.shape[-1]).index_select(0, keep))
    loss = F.cross_entropy(scores, labels.view(-1).index_select(0, keep))
    return MaskedLMOutput(loss=loss, logits=scores)


def predict_masked_positions_only(model) -> bool:
    """Switch a BertForMaskedLM encoder (BERT, MiniLM); True when switched."""
    from transformers import BertForMaskedLM
    from transformers.models.bert.modeling_bert import BertOnlyMLMHead

    if type(model) is not BertForMaskedLM or model.config.is_decoder or type(model.cls) is not BertOnlyMLMHead:
        return False
    model.forward = types.MethodType(_model_forward, model)
    return True
