"""Zero-shot scoring runs each prompt once for all its choices (llmctl.generation.shared_context):
one-token choices from the prompt's last position, longer ones after its key/value cache, and
tokens every prompt starts with once for all. All
must give the log-likelihoods of scoring each (prompt, choice) alone in a plain unpadded forward
pass, within float32 rounding (atol 1e-4 on a sum of log-probabilities), and the same argmax."""

from __future__ import annotations

import json

import pytest

from helpers import run_cli

PROMPTS = ["The movie was", "I really loved this film, but the ending felt", "Alice Smith works as a",
           "When did Bob Jones visit Paris? The plot was", "x", "The acting was truly"]
ONE_TOKEN = [" great", " boring", " the"]  # one token each in the tiny BPE vocabularies
LONGER = [" good", " bad", " really boring movie", " great"]  # 4, 2, many and 1 token(s)
TOLERANCE = 1e-4  # float32 sums over a few tokens, another batch shape than the reference


def alone(model, request, j):
    """log P(choice j | context): the plain forward pass over context + choice, no padding, no cache."""
    import torch

    ids = torch.tensor([request.context + request.continuations[j]])
    logprobs = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
    n = len(request.continuations[j])
    return logprobs[-n:].gather(-1, ids[0, -n:, None]).sum().item()


def scored(path, choices, batch_size, prompts=PROMPTS):
    """(shared-context scores, each choice alone, forward passes the scorer made)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmctl.generation.loglikelihood import encode_requests, score_causal

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    requests = encode_requests(prompts, choices, tokenizer, "causal")
    calls = []
    hook = model.register_forward_hook(lambda module, args, kwargs_out: calls.append(1))
    with torch.inference_mode():
        shared = score_causal(model, requests, batch_size, "cpu")
        hook.remove()
        reference = torch.tensor([[alone(model, r, j) for j in range(len(choices))] for r in requests],
                                 dtype=torch.float64)
    return requests, shared, reference, len(calls)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_one_token_choices_take_one_pass_per_batch_and_equal_scoring_alone(tiny_models, family):
    requests, shared, reference, passes = scored(tiny_models[family], ONE_TOKEN, batch_size=4)
    assert all(len(c) == 1 for r in requests for c in r.continuations)
    assert passes == 2  # 6 prompts in batches of 4: one pass per batch, none per choice
    assert torch_close(shared, reference)
    assert shared.argmax(1).tolist() == reference.argmax(1).tolist()


@pytest.mark.parametrize("family", ["gpt2", "qwen2"])
def test_longer_choices_continue_from_the_context_cache_and_equal_scoring_alone(tiny_models, family):
    requests, shared, reference, passes = scored(tiny_models[family], LONGER, batch_size=4)
    assert {len(c) for c in requests[0].continuations} >= {1, 2, 4}
    # Per batch of 4 prompts: the contexts once, then the 12 longer choices 4 at a time after the cache.
    assert passes == (1 + 3) + (1 + 2)
    assert torch_close(shared, reference)
    assert shared.argmax(1).tolist() == reference.argmax(1).tolist()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_an_instruction_every_prompt_starts_with_runs_once(tiny_models, family):
    prompts = ["Say whether the review is good or bad. Review: " + p for p in PROMPTS]
    requests, shared, reference, passes = scored(tiny_models[family], LONGER, 4, prompts)
    assert passes == 1 + (1 + 3) + (1 + 2)  # the instruction once, then the batches as above
    assert torch_close(shared, reference)
    assert shared.argmax(1).tolist() == reference.argmax(1).tolist()


def torch_close(a, b) -> bool:
    import torch

    return bool(torch.allclose(a, b, atol=TOLERANCE, rtol=0))


def test_multiple_choice_eval_scores_endings_as_alone(tiny_models, tmp_path):
    """`llmctl eval` of an untrained decoder on multiple-choice rows whose endings differ in length:
    the accuracy is the one each ending's own plain forward pass gives."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmctl.generation.loglikelihood import encode_requests

    rows = [{"question": p, "choices": [c.strip() for c in LONGER], "answerKey": "ABCD"[i % 4]}
            for i, p in enumerate(PROMPTS)]
    data = tmp_path / "arc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tmp_path / "mc.yaml"
    recipe.write_text(f"task: multiple-choice\nmodel: {{name_or_path: {tiny_models['llama']}}}\n"
                      f"data: {{validation: {data}, context_column: question, choices_column: choices, "
                      "label_column: answerKey}\n")
    saved = tmp_path / "mc.jsonl"
    result = run_cli("eval", str(tiny_models["llama"]), "--recipe", str(recipe), "--json", "--batch-size", "4",
                     "--save-predictions", str(saved))
    assert result.exit_code == 0, result.stderr[-2000:]
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["llama"])
    model = AutoModelForCausalLM.from_pretrained(tiny_models["llama"], dtype=torch.float32).eval()
    with torch.inference_mode():
        best = [max(range(4), key=lambda j: alone(model, r, j))
                for r in encode_requests(PROMPTS, LONGER, tokenizer, "causal")]
    gold = [i % 4 for i in range(len(rows))]
    assert result.json()["metrics"]["accuracy"] == pytest.approx(sum(b == g for b, g in zip(best, gold)) / len(rows))
    # --save-predictions: each row's pick, its ending, every ending's score and the reference index
    written = [json.loads(line) for line in saved.read_text().splitlines()]
    assert [r["prediction"] for r in written] == best and [r["reference"] for r in written] == gold
    assert [r["question"] for r in written] == PROMPTS and all(len(r["scores"]) == 4 for r in written)
    assert [r["ending"] for r in written] == [rows[i]["choices"][b] for i, b in enumerate(best)]
