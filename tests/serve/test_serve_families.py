"""GPT-2 (no chat template), T5 (encoder-decoder), a Mistral with a sliding window shorter than
the prompts, a Qwen2 mixing full and sliding layers (all batched into one forward pass per step)
and a Llama 4 with chunked attention (a cache the batch cannot splice: stepped row by row) served:
concurrent greedy answers equal `llmctl generate --precision fp32`. 40 new tokens: more than the
spare columns a cache layer keeps (serve/cache.py), so buffers regrow while rows join and leave."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import run_cli
from serve_helpers import Server

PROMPTS = ["The movie was", "Alice works as a teacher for Acme Corp in Paris and", "When did Bob",
           "In 1990, the City Council opened an office in Oslo with"]


def windowed(family, tiny_models, dest):
    """A tiny decoder on the Llama tokenizer whose window (4 tokens) is shorter than every prompt:
    Mistral (every layer sliding), Qwen2 (a full layer, then a sliding one), Llama 4 (chunked)."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["llama"])
    shape = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                 eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    if family == "mistral":
        from transformers import MistralConfig, MistralForCausalLM

        model = MistralForCausalLM(MistralConfig(sliding_window=4, **shape))
    elif family == "qwen2-mixed":
        from transformers import Qwen2Config, Qwen2ForCausalLM

        model = Qwen2ForCausalLM(Qwen2Config(use_sliding_window=True, sliding_window=4, max_window_layers=1, **shape))
        assert model.config.layer_types == ["full_attention", "sliding_attention"]
    else:
        from transformers import Llama4ForCausalLM, Llama4TextConfig

        model = Llama4ForCausalLM(Llama4TextConfig(attention_chunk_size=4, intermediate_size_mlp=64, head_dim=16,
                                                   num_local_experts=2, **shape))
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


BATCHED = {"gpt2": 1, "t5": 1, "mistral": 1, "qwen2-mixed": 1, "llama4-chunked": 0}


@pytest.mark.parametrize("family", list(BATCHED))
def test_concurrent_greedy_equals_generate(family, tiny_models, tmp_path):
    model = str(tiny_models[family] if family in tiny_models else windowed(family, tiny_models, tmp_path / family))
    (tmp_path / "p.txt").write_text("\n".join(PROMPTS) + "\n")
    expected = run_cli("generate", model, "--file", str(tmp_path / "p.txt"), "--precision", "fp32",
                       "--max-new-tokens", "40", "--json")
    assert expected.exit_code == 0, expected.stderr
    want = [row["completion"] for row in expected.json()["results"]]
    server = Server(model, "--precision", "fp32", "--max-batch", "3", "--json", tmp=tmp_path)
    try:
        ready = json.loads(server.lines[0])  # the weights' layout is timed for one client; fp32 as asked
        assert ready["precision"] == "fp32" and ready["precision_plan"]["chosen_by"] == "requested"
        assert ready["precision_plan"]["batch"] == 1 and ready["precision_plan"]["layout"] in ("rows", "columns", "numpy")
        client = server.client(key=None)

        def ask(prompt):
            return client.completions.create(model=model, prompt=prompt, max_tokens=40).choices[0].text

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(ask, PROMPTS * 2)) == want * 2
        # Chunked-attention caches are stepped one sequence at a time; /metrics says so.
        metrics = server.metrics(key=None)
        assert metrics["llmctl_batched_forward"] == BATCHED[family]
        assert metrics["llmctl_batch_size_count"] > metrics['llmctl_batch_size_bucket{le="1"}']  # rows shared steps
        if family == "gpt2":  # chat on a model without a chat template
            chat = server.http(key=None).post("/v1/chat/completions",
                                              json={"messages": [{"role": "user", "content": "x"}]})
            assert chat.status_code == 400 and chat.json()["error"]["code"] == "no_chat_template"
    finally:
        server.stop()
