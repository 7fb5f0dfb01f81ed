"""Zero-shot classification eval: labels scored by a generative model's likelihood of their verbalizers."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from helpers import run_cli, sentiment_rows, write_csv
from llmctl.tasks.recipe import load_recipe
from llmctl.errors import EXIT_DATA, EXIT_MODEL, RecipeError

TEMPLATE = "Review: {sentence}\nSentiment:"
GPT2_WORDS = {"negative": " awful", "positive": " great"}
T5_WORDS = {"negative": "awful", "positive": "great"}


def zero_shot_recipe(path, model, valid, template=TEMPLATE, verbalizers=None, data=None, **extra):
    recipe = {"task": "classification", "model": {"name_or_path": str(model)},
              "data": {"validation": str(valid), **(data or {})},
              "zero_shot": {"template": template, "verbalizers": verbalizers or GPT2_WORDS, **extra}}
    path.write_text(f"# llmctl eval {model} --recipe {path}\n" + yaml.safe_dump(recipe, sort_keys=False))
    return path


def favouring(model_dir, dest, kind, word):
    """A copy of a tiny model hand-built to continue any text with `word` (then eos, for T5):
    every layer's output is zeroed, so the final norm sees only a fixed direction `u`, and
    the embeddings of `word` (and eos) are made long along `u`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    shutil.copytree(model_dir, dest)
    tokenizer = AutoTokenizer.from_pretrained(dest)
    model = (AutoModelForCausalLM if kind == "causal" else AutoModelForSeq2SeqLM).from_pretrained(dest)
    favoured = tokenizer(word, add_special_tokens=kind != "causal")["input_ids"]
    embeddings = model.get_output_embeddings().weight  # tied to the input embeddings in both families
    u = torch.nn.functional.normalize(torch.randn(embeddings.shape[1], generator=torch.Generator().manual_seed(0)), dim=0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("attn.c_proj.weight", "attn.c_proj.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")) \
                    or (name.startswith("decoder.block") and name.endswith(("o.weight", "wo.weight"))):
                param.zero_()
        if kind == "causal":
            model.transformer.ln_f.weight.zero_()
            model.transformer.ln_f.bias.copy_(u)
        else:
            embeddings[model.config.decoder_start_token_id] = u  # the decoder's first input
        for token in favoured:
            embeddings[token] = 20 * u
    model.save_pretrained(dest)
    return dest


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zs_data")
    both = sentiment_rows(16, string_labels=True)
    # 8 positive, 4 negative rows: accuracy tells "all positive" from "all negative".
    rows = [r for r in both if r["label"] == "positive"] + [r for r in both if r["label"] == "negative"][:4]
    return rows, write_csv(folder / "valid.csv", rows)


@pytest.fixture(scope="module")
def favours_great(tiny_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("favours_great")
    return {"gpt2": favouring(tiny_models["gpt2"], folder / "gpt2", "causal", " great"),
            "t5": favouring(tiny_models["t5"], folder / "t5", "seq2seq", "great")}


@pytest.mark.parametrize("family,words", [("gpt2", GPT2_WORDS), ("t5", T5_WORDS)])
def test_picks_the_label_the_model_favours(favours_great, reviews, tmp_path, family, words):
    rows, valid = reviews  # 8 of the 12 rows are positive
    model = favours_great[family]
    recipe = zero_shot_recipe(tmp_path / "zs.yaml", model, valid, verbalizers=words)
    result = run_cli("eval", str(model), "--recipe", str(recipe), "--json", "--batch-size", "5")
    assert result.exit_code == 0, result.stderr
    out = result.json()
    # Every row is called positive (" great"): accuracy is the share of positive rows.
    assert out["metrics"]["accuracy"] == pytest.approx(8 / 12) and out["samples"] == 12
    assert out["metrics"]["f1"] == pytest.approx(2 * 8 / (8 + 12))
    assert set(out["metrics"]) >= {"loss", "accuracy", "f1", "matthews_correlation"}
    assert out["zero_shot"]["model_kind"] == ("causal" if family == "gpt2" else "seq2seq")
    # Swap the verbalizers: now every row is called negative.
    swapped = {"negative": words["positive"], "positive": words["negative"]}
    recipe = zero_shot_recipe(tmp_path / "swapped.yaml", model, valid, verbalizers=swapped)
    flipped = run_cli("eval", str(model), "--recipe", str(recipe), "--fail-under", "accuracy=0.5")
    assert flipped.exit_code == 4, flipped.stderr
    assert "accuracy 0.3333 < 0.5" in flipped.stderr


def test_scores_do_not_depend_on_batching(tiny_models, reviews):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmctl.generation.loglikelihood import encode_requests, score_causal
    from llmctl.generation.zeroshot import fill_template

    rows, _ = reviews
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["gpt2"])
    model = AutoModelForCausalLM.from_pretrained(tiny_models["gpt2"]).eval()
    prompts = fill_template(TEMPLATE, ["sentence"], [[r["sentence"] for r in rows]])
    requests = encode_requests(prompts, [" bad", " very good"], tokenizer, "causal")
    with torch.inference_mode():
        batched = score_causal(model, requests, 7, "cpu")
        alone = score_causal(model, requests, 1, "cpu")
        # Reference: the plain, unpadded forward pass for one example.
        ids = torch.tensor([requests[0].context + requests[0].continuations[1]])
        logprobs = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
        n = len(requests[0].continuations[1])
        expected = logprobs[-n:].gather(-1, ids[0, -n:, None]).sum().item()
    assert torch.allclose(batched, alone, atol=1e-4)
    assert batched[0, 1].item() == pytest.approx(expected, abs=1e-4)


def test_recipe_checks(tmp_path, reviews):
    _, valid = reviews
    # The template's columns become data.text_columns when they are not given.
    recipe = load_recipe(str(zero_shot_recipe(tmp_path / "a.yaml", "m", valid, template="Q: {question}\nA:")))
    assert recipe.data.text_columns == ["question"]
    problems = {
        "not in data.text_columns": dict(template="{review}", data={"text_columns": ["sentence"]}),
        "names no column": dict(template="Sentiment:"),
        "not a plain column name": dict(template="{0} is"),
        "not a valid template": dict(template="{sentence"),
        "share a verbalizer": dict(verbalizers={"negative": " ok", "positive": " ok"}),
        "at least two labels": dict(verbalizers={"positive": " good"}),
        "data.label_names": dict(data={"label_names": ["neg", "pos"]}),
    }
    for expected, kwargs in problems.items():
        with pytest.raises(RecipeError, match=expected):
            load_recipe(str(zero_shot_recipe(tmp_path / "bad.yaml", "m", valid, **kwargs)))


def test_bad_input_is_named_before_the_model_loads(tiny_models, reviews, tmp_path):
    _, valid = reviews
    recipe = zero_shot_recipe(tmp_path / "zs.yaml", tiny_models["gpt2"], valid, template="{text} is",
                              data={"text_columns": ["text"]})
    missing = run_cli("eval", str(tiny_models["gpt2"]), "--recipe", str(recipe))
    assert missing.exit_code == EXIT_DATA
    assert "column 'text' is not in" in missing.stderr and "Traceback" not in missing.stderr
    recipe = zero_shot_recipe(tmp_path / "zs2.yaml", tiny_models["bert"], valid)
    encoder = run_cli("eval", str(tiny_models["bert"]), "--recipe", str(recipe))
    assert encoder.exit_code == EXIT_MODEL
    assert "encoder-only 'bert'" in encoder.stderr and "T5-family (encoder-decoder)" in encoder.stderr


def test_save_predictions_writes_each_rows_label_likelihoods_and_reference(favours_great, reviews, tmp_path):
    rows, valid = reviews
    model = favours_great["gpt2"]
    recipe = zero_shot_recipe(tmp_path / "zs.yaml", model, valid)
    target = tmp_path / "zs.jsonl"
    result = run_cli("eval", str(model), "--recipe", str(recipe), "--json", "--save-predictions", str(target))
    assert result.exit_code == 0, result.stderr
    out = result.json()
    assert out["predictions_file"] == str(target)
    written = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["sentence"] for r in written] == [r["sentence"] for r in rows]
    assert [r["reference"] for r in written] == [r["label"] for r in rows]
    assert {r["label"] for r in written} == {"positive"}  # the model favours " great"
    for r in written:
        assert r["loglikelihoods"]["positive"] > r["loglikelihoods"]["negative"]
        assert r["scores"]["positive"] == r["score"] and sum(r["scores"].values()) == pytest.approx(1, abs=1e-5)
    hits = sum(r["label"] == r["reference"] for r in written) / len(written)
    assert hits == pytest.approx(out["metrics"]["accuracy"])
