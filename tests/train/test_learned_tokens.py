"""Running a decoder LM's head only where a token is learned changes no loss or gradient."""

import pytest
import torch
from transformers import (GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig,
                          LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, T5Config, T5ForConditionalGeneration)

from helpers import assert_same_gradients
from llmctl.train.speedups.learned_tokens import project_learned_tokens_only

SMALL = {"vocab_size": 90, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64, "pad_token_id": 0}
FAMILIES = {
    "llama": lambda: LlamaForCausalLM(LlamaConfig(**SMALL, tie_word_embeddings=True)),
    "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**SMALL)),
    "gpt2": lambda: GPT2LMHeadModel(GPT2Config(vocab_size=90, n_embd=16, n_layer=2, n_head=2, n_positions=64,
                                                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)),
    "gpt-neox": lambda: GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=90, hidden_size=16, num_hidden_layers=2,
                                                          num_attention_heads=2, intermediate_size=32)),
}


def _pair(family):
    torch.manual_seed(0)
    stock = FAMILIES[family]()
    fast = FAMILIES[family]()
    fast.load_state_dict(stock.state_dict())
    assert project_learned_tokens_only(fast) is True
    return stock.train(), fast.train()


def _chat_batch():
    """Right-padded rows whose answers (the learned tokens) sit at different positions."""
    torch.manual_seed(1)
    ids = torch.randint(3, 90, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[2, 6:] = 0
    labels = torch.full_like(ids, -100)
    labels[0, 9:12] = ids[0, 9:12]
    labels[1, 7:9] = ids[1, 7:9]
    labels[2, 4:6] = ids[2, 4:6]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_same_loss_and_gradients_as_the_stock_model(family):
    stock, fast = _pair(family)
    batch = _chat_batch()
    out_stock, out_fast = stock(**batch), fast(**batch)
    assert torch.allclose(out_fast.loss, out_stock.loss, atol=1e-6)
    learned = torch.nn.functional.pad(batch["labels"], (0, 1), value=-100)[:, 1:].ne(-100)
    assert out_fast.logits.shape == (int(learned.sum()), 90)  # the learned positions' scores only
    assert torch.allclose(out_fast.logits, out_stock.logits[learned], atol=1e-5)
    out_stock.loss.backward()
    out_fast.loss.backward()
    assert_same_gradients(stock, fast)


def test_under_bf16_autocast_the_loss_matches_too():
    stock, fast = _pair("llama")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.allclose(fast(**_chat_batch()).loss, stock(**_chat_batch()).loss, atol=1e-5)


def test_text_data_evaluation_and_generation_take_the_stock_forward():
    stock, fast = _pair("llama")
    batch = _chat_batch()
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)  # plain text: most learned
    assert fast(**batch).logits.shape == (3, 12, 90)
    with torch.no_grad():
        assert fast(**_chat_batch()).logits.shape == (3, 12, 90)  # no gradient: evaluation
    fast.eval()
    stock.eval()
    assert fast(**_chat_batch()).logits.shape == (3, 12, 90)
    prompt = torch.tensor([[5, 6, 7]])
    assert torch.equal(fast.generate(prompt, max_new_tokens=4, do_sample=False),
                       stock.generate(prompt, max_new_tokens=4, do_sample=False))


def test_models_with_other_heads_are_left_alone():
    torch.manual_seed(0)
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=90, d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8))
    assert project_learned_tokens_only(t5) is False
    assert "forward" not in vars(t5)
