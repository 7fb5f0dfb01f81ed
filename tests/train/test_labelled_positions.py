"""Finishing a BERT token classifier's last layer only at labelled positions changes no loss or gradient."""

import torch
from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification

from helpers import TINY_BERT, assert_same_gradients, tiny_bert_pair
from llmctl.train.speedups.attention import use_fast_attention
from llmctl.train.speedups.labelled_positions import finish_labelled_positions_only


def _pair(**extra):
    return tiny_bert_pair(BertForTokenClassification, finish_labelled_positions_only, num_labels=5, **extra)


def _inputs():
    torch.manual_seed(1)
    ids = torch.randint(1, 60, (3, 8))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    labels = torch.randint(0, 5, (3, 8))
    labels[:, 0] = -100  # [CLS]
    labels[0, 3] = labels[2, 4:6] = -100  # later sub-tokens of a word
    labels[1, 4:] = -100  # [SEP] and padding
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_same_loss_and_gradients_as_the_full_model():
    full, fast = _pair()
    full.train()
    fast.train()
    out_full, out_fast = full(**_inputs()), fast(**_inputs())
    assert torch.allclose(out_fast.loss, out_full.loss, atol=1e-6)
    keep = _inputs()["labels"].ne(-100)
    assert torch.allclose(out_fast.logits[keep], out_full.logits[keep], atol=1e-6)
    assert not out_fast.logits[~keep].any()  # unread positions are left at zero
    out_full.loss.backward()
    out_fast.loss.backward()
    assert_same_gradients(full, fast)


def test_eval_and_calls_without_labels_run_the_stock_forward():
    full, fast = _pair(attention_probs_dropout_prob=0.1, hidden_dropout_prob=0.1)
    use_fast_attention(fast)
    full.eval()
    fast.eval()
    inputs = _inputs()
    with torch.no_grad():
        assert torch.allclose(fast(**inputs).logits, full(**inputs).logits, atol=1e-6)
        inputs.pop("labels")
        fast.train()
        assert fast(**inputs).logits.shape == (3, 8, 5)  # every position, no labels to select by
    fast(**_inputs()).loss.backward()  # training with dropout backpropagates through the last layer
    assert fast.bert.encoder.layer[-1].output.dense.weight.grad.any()
    assert "_llmctl_labelled_positions" not in vars(fast.bert.encoder.layer[-1])


def test_only_bert_token_classifiers_are_switched():
    torch.manual_seed(0)
    assert finish_labelled_positions_only(BertForSequenceClassification(BertConfig(**TINY_BERT))) is False
    decoder = BertForTokenClassification(BertConfig(**(TINY_BERT | {"is_decoder": True})))
    assert finish_labelled_positions_only(decoder) is False
    assert "forward" not in vars(decoder)
