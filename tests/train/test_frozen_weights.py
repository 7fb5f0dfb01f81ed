"""LoRA's frozen base stored in bf16 under bf16 autocast: bitwise the same step, half the memory."""

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from llmctl.train.speedups.frozen_weights import cast_frozen_linears

CONFIG = {"vocab_size": 90, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64,
          "tie_word_embeddings": True}


def _lora_model():
    torch.manual_seed(0)
    model = get_peft_model(LlamaForCausalLM(LlamaConfig(**CONFIG)),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    for name, param in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero; give the adapter something to say
            torch.nn.init.normal_(param, std=0.2)
    return model.train()


def _step(model):
    torch.manual_seed(3)
    ids = torch.randint(3, 90, (2, 9))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def test_bitwise_same_loss_and_adapter_gradients():
    stock, cast = _lora_model(), _lora_model()
    # every frozen projection (7 per layer, LoRA or not) is cast; the tied head is not
    assert cast_frozen_linears(cast, torch.bfloat16) == 2 * 7
    loss_a, grads_a = _step(stock)
    loss_b, grads_b = _step(cast)
    assert torch.equal(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys() and all(torch.equal(grads_a[n], grads_b[n]) for n in grads_a)


def test_what_trains_and_what_is_shared_keeps_fp32():
    model = _lora_model()
    cast_frozen_linears(model, torch.bfloat16)
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert all(dtypes[n] == torch.float32 for n, p in model.named_parameters() if p.requires_grad)
    assert dtypes["base_model.model.model.embed_tokens.weight"] == torch.float32  # tied to lm_head
    assert dtypes["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"] == torch.bfloat16
    assert dtypes["base_model.model.model.layers.0.self_attn.k_proj.weight"] == torch.bfloat16
    assert dtypes["base_model.model.model.norm.weight"] == torch.float32  # not a linear layer


def test_full_fine_tuning_is_untouched():
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**CONFIG))
    assert cast_frozen_linears(model, torch.bfloat16) == 0
    assert all(p.dtype == torch.float32 for p in model.parameters())
