"""Running BERT's masked-LM head only at labelled positions changes no loss or gradient."""

import torch
from transformers import BertConfig, BertForMaskedLM, BertForTokenClassification

from helpers import TINY_BERT, assert_same_gradients, tiny_bert_pair
from llmctl.train.speedups.masked_positions import predict_masked_positions_only


def _inputs():
    torch.manual_seed(1)
    ids = torch.randint(5, 60, (3, 10))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    labels = torch.full_like(ids, -100)
    labels[0, 2] = 7
    labels[0, 5] = 11
    labels[1, 3] = 40
    labels[2, 1:4] = torch.tensor([8, 9, 10])  # a whole word's pieces
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_same_loss_and_gradients_as_the_full_model():
    full, fast = tiny_bert_pair(BertForMaskedLM, predict_masked_positions_only)
    full.train()
    fast.train()
    out_full, out_fast = full(**_inputs()), fast(**_inputs())
    assert torch.allclose(out_fast.loss, out_full.loss, atol=1e-6)
    keep = _inputs()["labels"].ne(-100)
    assert out_fast.logits.shape == (int(keep.sum()), TINY_BERT["vocab_size"])  # scores of labelled positions only
    assert torch.allclose(out_fast.logits, out_full.logits[keep], atol=1e-5)
    out_full.loss.backward()
    out_fast.loss.backward()
    assert_same_gradients(full, fast)


def test_eval_and_calls_without_labels_run_the_stock_forward():
    full, fast = tiny_bert_pair(BertForMaskedLM, predict_masked_positions_only)
    full.eval()
    fast.eval()
    inputs = _inputs()
    with torch.no_grad():
        assert torch.allclose(fast(**inputs).logits, full(**inputs).logits, atol=1e-6)
        inputs.pop("labels")
        fast.train()
        assert fast(**inputs).logits.shape == (3, 10, TINY_BERT["vocab_size"])  # every position


def test_only_bert_masked_lm_encoders_are_switched():
    torch.manual_seed(0)
    assert predict_masked_positions_only(BertForTokenClassification(BertConfig(**TINY_BERT))) is False
    decoder = BertForMaskedLM(BertConfig(**(TINY_BERT | {"is_decoder": True})))
    assert predict_masked_positions_only(decoder) is False
    assert "forward" not in vars(decoder)
