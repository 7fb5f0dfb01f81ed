"""Modern decoder LMs (Llama, Qwen2 fixtures) through every task, end to end through the real CLI:
finetune a few steps -> eval -> predict, generate, and zero-shot eval. Each family has its own
pad-token convention (Llama/SmolLM2: none; Qwen2: <|endoftext|>), and a sequence classifier
finds each row's last token through config.pad_token_id, so a missing one fails only here."""

import json
import math
import random

import pytest
import yaml

from helpers import (ONE_THREAD, build_recipe, error_lines, finetune_json, keyword_sentiment_rows, ner_sentence,
                     run_cli, write_conll, write_csv)
from llmctl.errors import EXIT_MODEL, EXIT_OK
from qa_helpers import flat_rows, make_articles, qa_recipe, write_jsonl, write_squad

FAMILIES = ["llama", "qwen2"]
# NER, QA and causal-LM training take the same path for both families (only tokenizer conventions
# differ, which classification, generate and zero-shot cover): qwen2's runs of them are slow tests.
TRAINING_FAMILIES = ["llama", pytest.param("qwen2", marks=pytest.mark.slow)]
FEW_STEPS = {"max_steps": 6, "learning_rate": 3e-3, "eval_every": 6, "save_every": 6}


def finite_metrics(metrics: dict, names: set) -> None:
    assert names <= set(metrics), metrics
    assert all(math.isfinite(metrics[name]) for name in names), metrics


def saved_config(run_dir):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(run_dir / "model")


@pytest.mark.parametrize("family", FAMILIES)
def test_classification(family, tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", keyword_sentiment_rows(48, seed=0))
    valid = write_csv(tmp_path / "valid.csv", keyword_sentiment_rows(12, seed=1))
    run_dir = tmp_path / "run"
    recipe = build_recipe(tmp_path / "r.yaml", "classification", tiny_models[family], run_dir,
                          {"train": str(train), "validation": str(valid), "text_columns": ["sentence"],
                           "label_column": "label", "max_length": 32}, train=FEW_STEPS)
    out = finetune_json(recipe)
    finite_metrics(out["metrics"], {"loss", "accuracy", "f1"})
    config = saved_config(run_dir)
    # Padded rows are scored at their last real token, which the model finds through pad_token_id.
    assert config.pad_token_id is not None and config.architectures == [f"{config.model_type.capitalize()}ForSequenceClassification"]

    evaluated = run_cli("eval", str(run_dir), "--json", env=ONE_THREAD)
    assert evaluated.exit_code == EXIT_OK, evaluated.stderr
    assert evaluated.json()["metrics"]["accuracy"] == pytest.approx(out["metrics"]["accuracy"])
    # Batched (padded) and one-row predictions agree: padding must not move the scored token.
    inputs = tmp_path / "in.jsonl"
    texts = ["the movie was really great", "the plot was somewhat boring and the cast was quite dull too"]
    inputs.write_text("".join(json.dumps({"sentence": t}) + "\n" for t in texts))
    batched = run_cli("predict", str(run_dir), "--input", str(inputs), "--json", env=ONE_THREAD)
    assert batched.exit_code == EXIT_OK, batched.stderr
    one_by_one = run_cli("predict", str(run_dir), "--input", str(inputs), "--json", "--batch-size", "1", env=ONE_THREAD)
    rows, single = batched.json()["predictions"], one_by_one.json()["predictions"]
    assert [r["label"] for r in rows] == [r["label"] for r in single]
    assert all(r["label"] in ("positive", "negative") for r in rows)
    for a, b in zip(rows, single):
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)


@pytest.mark.parametrize("family", TRAINING_FAMILIES)
def test_ner(family, tiny_models, tmp_path):
    rng = random.Random(0)
    train = write_conll(tmp_path / "train.txt", [ner_sentence(rng) for _ in range(32)])
    valid = write_conll(tmp_path / "valid.txt", [ner_sentence(rng) for _ in range(8)])
    run_dir = tmp_path / "run"
    recipe = build_recipe(tmp_path / "r.yaml", "ner", tiny_models[family], run_dir,
                          {"train": str(train), "validation": str(valid), "max_length": 32}, train=FEW_STEPS)
    out = finetune_json(recipe)
    finite_metrics(out["metrics"], {"loss", "precision", "recall", "f1"})
    assert saved_config(run_dir).id2label[0] == "O"

    evaluated = run_cli("eval", str(run_dir), "--json", env=ONE_THREAD)
    assert evaluated.exit_code == EXIT_OK, evaluated.stderr
    assert evaluated.json()["samples"] == 8
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(json.dumps({"tokens": ["Bob", "was", "born", "in", "Tokyo", "."]}) + "\n")
    predicted = run_cli("predict", str(run_dir), "--input", str(inputs), env=ONE_THREAD)
    assert predicted.exit_code == EXIT_OK, predicted.stderr
    (row,) = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert row["tokens"] == ["Bob", "was", "born", "in", "Tokyo", "."] and len(row["tags"]) == 6


@pytest.mark.parametrize("family", TRAINING_FAMILIES)
def test_qa(family, tiny_models, tmp_path):
    train = write_squad(tmp_path / "train.json", make_articles(n_articles=2, paragraphs=1, people=3, seed=0))
    valid_rows = flat_rows(make_articles(n_articles=1, paragraphs=1, people=3, seed=1))
    valid = write_jsonl(tmp_path / "valid.jsonl", valid_rows)
    run_dir = tmp_path / "run"
    out = finetune_json(qa_recipe(tmp_path / "r.yaml", tiny_models[family], train, valid, run_dir, train=FEW_STEPS))
    finite_metrics(out["metrics"], {"loss", "exact_match", "f1"})
    assert saved_config(run_dir).pad_token_id is not None

    evaluated = run_cli("eval", str(run_dir), "--json", env=ONE_THREAD)
    assert evaluated.exit_code == EXIT_OK, evaluated.stderr
    assert evaluated.json()["samples"] == len(valid_rows)
    context = valid_rows[0]["context"]
    one = run_cli("predict", str(run_dir), "--question", valid_rows[0]["question"], "--context", context, "--json",
                  env=ONE_THREAD)
    assert one.exit_code == EXIT_OK, one.stderr
    (row,) = one.json()["predictions"]
    assert row["start"] is None or context[row["start"]:row["end"]] == row["answer"]


@pytest.mark.parametrize("family", TRAINING_FAMILIES)
def test_causal_lm_then_generate(family, tiny_models, tmp_path):
    rows = [{"prompt": f"Review: {r['sentence']}\nSentiment:", "completion": f" {r['label']}"}
            for r in keyword_sentiment_rows(40)]
    train = write_jsonl(tmp_path / "train.jsonl", rows[:32])
    valid = write_jsonl(tmp_path / "valid.jsonl", rows[32:])
    run_dir = tmp_path / "run"
    recipe = build_recipe(tmp_path / "r.yaml", "causal-lm", tiny_models[family], run_dir,
                          {"train": str(train), "validation": str(valid), "prompt_column": "prompt",
                           "completion_column": "completion", "max_length": 32, "max_new_tokens": 3},
                          train=FEW_STEPS)
    out = finetune_json(recipe)
    finite_metrics(out["metrics"], {"loss", "perplexity"})

    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(run_dir / "model")
    evaluated = run_cli("eval", str(run_dir), "--json", env=ONE_THREAD)
    assert evaluated.exit_code == EXIT_OK, evaluated.stderr
    assert evaluated.json()["metrics"]["loss"] == pytest.approx(out["metrics"]["loss"], rel=1e-4)
    predicted = run_cli("predict", str(run_dir), "--input", str(valid), "--json", env=ONE_THREAD)
    assert predicted.exit_code == EXIT_OK, predicted.stderr
    assert len(predicted.json()["predictions"]) == len(rows) - 32

    generated = run_cli("generate", str(run_dir), "Review: the movie was great\nSentiment:", "Review: bad",
                        "--max-new-tokens", "4", "--precision", "fp32", "--json", env=ONE_THREAD)
    assert generated.exit_code == EXIT_OK, generated.stderr
    results = generated.json()["results"]
    assert len(results) == 2 and all(r["finish_reason"] in ("length", "stop") for r in results)


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_plain_and_chat(family, tiny_models):
    """The pretrained fixture straight from its folder: batched prompts of different lengths pad on
    the left, so each completion equals the one generated alone."""
    prompts = ["The movie was", "Alice Smith works as a teacher for"]
    args = ["--max-new-tokens", "5", "--precision", "fp32", "--json"]
    together = run_cli("generate", str(tiny_models[family]), *prompts, *args, env=ONE_THREAD)
    assert together.exit_code == EXIT_OK, together.stderr
    alone = [run_cli("generate", str(tiny_models[family]), p, *args, env=ONE_THREAD).json()["results"][0] for p in prompts]
    assert [r["completion"] for r in together.json()["results"]] == [r["completion"] for r in alone]
    chat = run_cli("generate", str(tiny_models[family]), "Where was Alice born?", "--chat", *args, env=ONE_THREAD)
    assert chat.exit_code == EXIT_OK, chat.stderr
    assert chat.json()["results"][0]["prompt_tokens"] > len("Where was Alice born?".split())


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_shot_eval(family, tiny_models, tmp_path):
    rows = keyword_sentiment_rows(12, seed=3)
    valid = write_csv(tmp_path / "valid.csv", rows)
    recipe = tmp_path / "zs.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "classification", "model": {"name_or_path": str(tiny_models[family])},
        "data": {"validation": str(valid), "text_columns": ["sentence"], "label_column": "label"},
        "zero_shot": {"template": "Review: {sentence}\nSentiment:",
                      "verbalizers": {"negative": " bad", "positive": " good"}}}))
    result = run_cli("eval", str(tiny_models[family]), "--recipe", str(recipe), "--json", env=ONE_THREAD)
    assert result.exit_code == EXIT_OK, result.stderr
    out = result.json()
    finite_metrics(out["metrics"], {"accuracy", "f1"})
    assert out["samples"] == 12 and out["zero_shot"]["model_kind"] == "causal"


def test_a_family_without_the_head_is_named(tmp_path, tiny_models):
    """transformers has no question-answering head for Phi: one line naming the model type and
    the head, before the run directory exists."""
    from transformers import AutoTokenizer, PhiConfig, PhiForCausalLM

    folder = tmp_path / "phi"
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["llama"])
    PhiForCausalLM(PhiConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                             num_attention_heads=4, max_position_embeddings=64)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    train = write_squad(tmp_path / "train.json", make_articles(n_articles=1, paragraphs=1, people=2, seed=0))
    result = run_cli("finetune", str(qa_recipe(tmp_path / "r.yaml", folder, train, None, tmp_path / "run")),
                     env=ONE_THREAD)
    assert result.exit_code == EXIT_MODEL, result.stderr
    (line,) = error_lines(result.stderr)
    assert "'phi'" in line and "question-answering" in line
    assert not (tmp_path / "run").exists()


def tiny_decoder(kind: str, tokenizer, folder):
    """A 1-layer Mistral / Phi-3 / GPT-NeoX checkpoint with the Llama fixture's tokenizer."""
    import torch
    from transformers import (GPTNeoXConfig, GPTNeoXForCausalLM, MistralConfig, MistralForCausalLM, Phi3Config,
                              Phi3ForCausalLM)

    sizes = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                 num_attention_heads=4, max_position_embeddings=128, eos_token_id=tokenizer.eos_token_id)
    config_class, model_class = {"mistral": (MistralConfig, MistralForCausalLM), "phi3": (Phi3Config, Phi3ForCausalLM),
                                 "gpt_neox": (GPTNeoXConfig, GPTNeoXForCausalLM)}[kind]
    if kind != "gpt_neox":  # their defaults (8 kv heads, Phi-3's pad id 32000) do not fit a tiny model
        sizes |= {"num_key_value_heads": 2, "pad_token_id": None}
    torch.manual_seed(0)
    model_class(config_class(**sizes)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["mistral", pytest.param("phi3", marks=pytest.mark.slow),
                                  pytest.param("gpt_neox", marks=pytest.mark.slow)])
def test_other_families_classify_and_generate(kind, tiny_models, tmp_path):
    from transformers import AutoTokenizer

    model = tiny_decoder(kind, AutoTokenizer.from_pretrained(tiny_models["llama"]), tmp_path / kind)
    train = write_csv(tmp_path / "train.csv", keyword_sentiment_rows(24, seed=0))
    run_dir = tmp_path / "run"
    recipe = build_recipe(tmp_path / "r.yaml", "classification", model, run_dir,
                          {"train": str(train), "validation": str(train), "text_columns": ["sentence"],
                           "label_column": "label", "max_length": 32},
                          train={"max_steps": 3, "eval_every": 3, "save_every": 3})
    out = finetune_json(recipe)
    finite_metrics(out["metrics"], {"loss", "accuracy"})
    assert saved_config(run_dir).model_type == kind and saved_config(run_dir).pad_token_id is not None
    generated = run_cli("generate", str(model), "The movie was", "Alice Smith works as a", "--max-new-tokens", "3",
                        "--precision", "fp32", "--json", env=ONE_THREAD)
    assert generated.exit_code == EXIT_OK, generated.stderr
    assert len(generated.json()["results"]) == 2
