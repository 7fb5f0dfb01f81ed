"""The running batch (serve/batch.py) under the ways it saves work: prompts that join at the same
step share one packed prefill pass where the model allows (serve/prefill.py), and the caches keep
room to grow and cut leaving rows in place (serve/cache.py). Every prompt's greedy answer is the
one it gets alone."""

from __future__ import annotations

import pytest

PROMPTS = ["The movie was", "Alice works as a teacher for Acme Corp in Paris and", "When did Bob",
           "In 1990, the City Council opened an office in Oslo with"]


def decode(model, tokenizer, groups: list[list[str]], steps: int) -> tuple[list[list[int]], list[int]]:
    """Greedy tokens of every prompt, the prompts joining a CausalBatch group by group (one group
    per engine cycle), and the prompts per prefill pass."""
    import torch

    from llmctl.serve.batch import CausalBatch
    from llmctl.serve.sampling import Sampling, Sequence

    batch, passes, seqs = CausalBatch(model, "cpu"), [], []
    with torch.inference_mode():
        for group in groups:
            joining = [Sequence(tokenizer(p)["input_ids"], Sampling(max_new_tokens=steps), lambda e: None, set(),
                                tokenizer) for p in group]
            passes += batch.add(joining)
            seqs += joining
            batch.step()
        for _ in range(steps):
            batch.step()
    return [seq.ids for seq in seqs], passes


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_packed_prefill_gives_each_prompt_its_own_answer(family, tiny_models):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_models[family]).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_models[family])
    # 40 steps: past the spare columns of the batch's cache buffers (serve/cache.py), which regrow.
    together, passes = decode(model, tokenizer, [PROMPTS[:3], PROMPTS[3:]], 40)
    assert passes == [3, 1]
    alone, passes = decode(model, tokenizer, [[p] for p in PROMPTS], 40)
    assert passes == [1, 1, 1, 1]
    # Alone, the last prompt joined three steps later; so compare each prompt's first 40 tokens.
    assert [ids[:40] for ids in together] == [ids[:40] for ids in alone]


def test_a_sliding_window_model_prefills_each_prompt_alone(tiny_models, tmp_path):
    from test_serve_families import windowed
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = windowed("mistral", tiny_models, tmp_path / "mistral")
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    _, passes = decode(model, AutoTokenizer.from_pretrained(path), [PROMPTS], 3)
    assert passes == [1, 1, 1, 1]


def test_rows_leaving_are_cut_in_place_and_the_rest_decode_on_unchanged(tiny_models):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmctl.serve.batch import CausalBatch
    from llmctl.serve.sampling import Sampling, Sequence

    model = AutoModelForCausalLM.from_pretrained(tiny_models["llama"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["llama"])
    alone = [decode(model, tokenizer, [[p]], 40)[0][0] for p in PROMPTS]
    seqs = [Sequence(tokenizer(p)["input_ids"], Sampling(max_new_tokens=40), lambda e: None, set(), tokenizer)
            for p in PROMPTS]
    batch = CausalBatch(model, "cpu")
    with torch.inference_mode():
        batch.add(seqs)
        for _ in range(10):
            batch.step()
        storage = [layer.keys.untyped_storage().data_ptr() for layer in batch.cache.layers]
        width = batch.mask.shape[1]
        # The two longest prompts leave: the padding columns only they needed are cut, the last row
        # moves up, and nothing is copied out of the buffers.
        batch.drop([0, 2])
        assert [layer.keys.untyped_storage().data_ptr() for layer in batch.cache.layers] == storage
        cut = width - batch.mask.shape[1]
        assert cut == 13 - 3 and all(layer.keys.shape[:3] == (2, layer.keys.shape[1], width - cut)
                                     for layer in batch.cache.layers)
        for _ in range(31):  # past the buffers' spare columns
            batch.step()
    assert [seqs[0].ids, seqs[2].ids] == [alone[0], alone[2]]  # 42 tokens: the prefill's and 41 steps'
    assert [seqs[1].ids, seqs[3].ids] == [alone[1][:11], alone[3][:11]]
