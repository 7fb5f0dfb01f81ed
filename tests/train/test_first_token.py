"""Computing only the first position in a BERT classifier's last layer changes nothing it reads."""

import torch
from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification

from helpers import TINY_BERT, tiny_bert_pair
from llmctl.train.speedups.attention import use_fast_attention
from llmctl.train.speedups.first_token import compute_first_position_only


def _pair(**extra):
    return tiny_bert_pair(BertForSequenceClassification, compute_first_position_only, **extra)


def _inputs():
    torch.manual_seed(1)
    ids = torch.randint(1, 60, (4, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    mask[3, 2:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 2, 1, 2])}


def test_same_loss_logits_and_gradients_as_the_full_model():
    full, fast = _pair()
    for model in (full, fast):
        model.train()
        model.zero_grad()
    out_full, out_fast = full(**_inputs()), fast(**_inputs())
    assert torch.allclose(out_fast.logits, out_full.logits, atol=1e-6)
    out_full.loss.backward()
    out_fast.loss.backward()
    fast_grads = dict(fast.named_parameters())
    for name, param in full.named_parameters():
        grad = fast_grads[name].grad
        if param.grad is None:
            assert grad is None or not grad.any(), name
        else:
            assert torch.allclose(grad, param.grad, atol=1e-6), name


def test_eval_and_the_fast_attention_path_agree_too():
    full, fast = _pair(attention_probs_dropout_prob=0.1)
    use_fast_attention(fast)
    full.eval()
    fast.eval()
    with torch.no_grad():
        assert torch.allclose(fast(**_inputs()).logits, full(**_inputs()).logits, atol=1e-6)
    fast.train()  # with attention dropout on, training runs and backpropagates
    fast(**_inputs()).loss.backward()
    assert fast.bert.encoder.layer[-1].attention.self.key.weight.grad.any()


def test_only_bert_sequence_classifiers_are_switched():
    torch.manual_seed(0)
    tokens = BertForTokenClassification(BertConfig(**TINY_BERT))  # reads every position
    assert compute_first_position_only(tokens) is False
    assert "forward" not in vars(tokens.bert.encoder.layer[-1])
