"""GPT-2 (no chat template), T5 (encoder-decoder) and a Mistral with a sliding window shorter
than the prompts (a cache the batch cannot splice: stepped row by row) served: concurrent greedy
answers equal `llmctl generate --precision fp32`."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import run_cli
from serve_helpers import Server

PROMPTS = ["The movie was", "Alice works as a teacher for Acme Corp in Paris and", "When did Bob",
           "In 1990, the City Council opened an office in Oslo with"]


def sliding_mistral(tiny_models, dest):
    """A tiny Mistral whose sliding window (4 tokens) is shorter than every prompt, on the Llama tokenizer."""
    import torch
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["llama"])
    torch.manual_seed(0)
    MistralForCausalLM(MistralConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                     num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                     sliding_window=4, max_position_embeddings=256,
                                     eos_token_id=tokenizer.eos_token_id)).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


@pytest.mark.parametrize("family", ["gpt2", "t5", "mistral"])
def test_concurrent_greedy_equals_generate(family, tiny_models, tmp_path):
    model = str(tiny_models[family] if family != "mistral" else sliding_mistral(tiny_models, tmp_path / "mistral"))
    (tmp_path / "p.txt").write_text("\n".join(PROMPTS) + "\n")
    expected = run_cli("generate", model, "--file", str(tmp_path / "p.txt"), "--precision", "fp32",
                       "--max-new-tokens", "10", "--json")
    assert expected.exit_code == 0, expected.stderr
    want = [row["completion"] for row in expected.json()["results"]]
    server = Server(model, "--precision", "fp32", "--max-batch", "3", "--json", tmp=tmp_path)
    try:
        ready = json.loads(server.lines[0])  # the weights' layout is timed for one client; fp32 as asked
        assert ready["precision"] == "fp32" and ready["precision_plan"]["chosen_by"] == "requested"
        assert ready["precision_plan"]["batch"] == 1 and ready["precision_plan"]["layout"] in ("rows", "columns")
        client = server.client(key=None)

        def ask(prompt):
            return client.completions.create(model=model, prompt=prompt, max_tokens=10).choices[0].text

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(ask, PROMPTS * 2)) == want * 2
        # Sliding-window caches are stepped one sequence at a time; /metrics says so.
        metrics = server.metrics(key=None)
        assert metrics["llmctl_batched_forward"] == (0 if family == "mistral" else 1)
        assert metrics["llmctl_batch_size_count"] > metrics['llmctl_batch_size_bucket{le="1"}']  # rows shared steps
        if family == "gpt2":  # chat on a model without a chat template
            chat = server.http(key=None).post("/v1/chat/completions",
                                              json={"messages": [{"role": "user", "content": "x"}]})
            assert chat.status_code == 400 and chat.json()["error"]["code"] == "no_chat_template"
    finally:
        server.stop()
