"""The CPU training attention computes sdpa's function: same softmax, same masks, same mask rate."""

import json

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2ForSequenceClassification

from llmctl.train.speedups import attention
from llmctl.train.speedups.dropout import fast_dropout


class _Module(torch.nn.Module):
    def __init__(self, is_causal=False):
        super().__init__()
        self.is_causal = is_causal


def _qkv(batch=3, heads=2, length=6, dim=8, dtype=torch.float32):
    torch.manual_seed(0)
    return [torch.randn(batch, heads, length, dim, dtype=dtype, requires_grad=True) for _ in range(3)]


def _reference(q, k, v, bias, p, seed):
    """softmax(q k^T * scale + bias), dropped with the same seeded mask, times v."""
    scores = (q @ k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5 + bias
    torch.manual_seed(seed)
    probs = fast_dropout(torch.softmax(scores, -1), p)
    return (probs.to(v.dtype) @ v).transpose(1, 2)


def test_padding_mask_matches_the_reference_math_with_the_same_seed():
    q, k, v = _qkv()
    keep = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    mask = keep[:, None, None, :].expand(3, 1, 6, 6)  # sdpa_mask's format: True = attend
    torch.manual_seed(7)
    out, weights = attention._attention(_Module(), q, k, v, mask, dropout=0.2, scaling=8 ** -0.5)
    bias = torch.zeros(3, 1, 6, 6).masked_fill(~mask, torch.finfo(torch.float32).min)
    expected = _reference(q, k, v, bias, 0.2, seed=7)
    assert weights is None and out.shape == (3, 6, 2, 8)
    assert torch.allclose(out, expected, atol=1e-6)
    out.sum().backward()  # gradients flow to all three inputs
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (q, k, v))


def test_causal_module_without_a_mask_gets_the_causal_mask():
    q, k, v = _qkv()
    torch.manual_seed(3)
    out, _ = attention._attention(_Module(is_causal=True), q, k, v, None, dropout=0.1)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    bias = torch.zeros(6, 6).masked_fill(~causal, torch.finfo(torch.float32).min)
    assert torch.allclose(out, _reference(q, k, v, bias, 0.1, seed=3), atol=1e-6)


def test_evaluation_and_no_grad_calls_are_exactly_sdpa():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    q, k, v = _qkv()
    theirs, _ = sdpa_attention_forward(_Module(), q, k, v, None, dropout=0.0)
    ours, _ = attention._attention(_Module().eval(), q, k, v, None, dropout=0.0)
    assert torch.equal(ours, theirs)
    with torch.no_grad():
        ours, _ = attention._attention(_Module(), q, k, v, None, dropout=0.0)
    assert torch.equal(ours, theirs)


def test_grouped_query_heads_without_dropout_match_sdpa_with_their_gradients():
    """Llama-style: 6 query heads share 2 key/value heads; causal + padding mask, no dropout."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(0)
    q = torch.randn(3, 6, 7, 8, requires_grad=True)
    k, v = (torch.randn(3, 2, 7, 8, requires_grad=True) for _ in range(2))
    keep = torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 3 + [0] * 4], dtype=torch.bool)
    mask = torch.ones(7, 7, dtype=torch.bool).tril()[None, None] & keep[:, None, None, :]

    class _Llama(_Module):
        num_key_value_groups = 3

    results = []
    for fn in (attention._attention, sdpa_attention_forward):
        out, _ = fn(_Llama(is_causal=True), q, k, v, mask, dropout=0.0, scaling=8 ** -0.5)
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum(), (q, k, v))
        results.append((out, grads))
    (ours, our_grads), (theirs, their_grads) = results
    assert ours.shape == theirs.shape == (3, 7, 6, 8)
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(our_grads, their_grads))


def test_dropout_rate_and_scaling_hold_in_bf16():
    q, k, v = _qkv(batch=8, heads=4, length=32, dtype=torch.bfloat16)
    v = torch.ones_like(v)  # each output element is then sum(kept probs) / (1 - p)
    out, _ = attention._attention(_Module(), q, k, v, None, dropout=0.5)
    assert out.dtype == torch.bfloat16
    assert abs(out.float().mean().item() - 1.0) < 0.02


def _tiny_bert():
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        attention_probs_dropout_prob=0.3))


def test_use_fast_attention_switches_sdpa_models_and_is_never_saved(tmp_path):
    model = _tiny_bert()
    assert model.config._attn_implementation == "sdpa"
    assert attention.use_fast_attention(model) is True
    assert model.config._attn_implementation == attention.NAME
    ids = torch.randint(5, 50, (4, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    model.train()
    model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1, 0, 1])).loss.backward()
    model.eval()
    with torch.no_grad():  # evaluation takes sdpa's path: same logits as a fresh sdpa model
        plain = _tiny_bert().eval()
        plain.load_state_dict(model.state_dict())
        assert torch.allclose(model(input_ids=ids, attention_mask=mask).logits,
                              plain(input_ids=ids, attention_mask=mask).logits, atol=1e-6)
    model.save_pretrained(tmp_path)
    assert attention.NAME not in (tmp_path / "config.json").read_text()
    assert "attn_implementation" not in json.loads((tmp_path / "config.json").read_text())


@pytest.mark.parametrize("implementation", ["eager"])
def test_a_deliberate_non_sdpa_choice_is_left_alone(implementation):
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32)
    config._attn_implementation = implementation
    model = GPT2ForSequenceClassification(config)
    assert attention.use_fast_attention(model) is False
    assert model.config._attn_implementation == implementation
