"""LoRA through the real CLI on the tiny checkpoints: every task trains an adapter whose loss
falls, the run saves the adapter (not the model), eval / predict / generate load it with its
base, `llmctl export` merges it into a checkpoint plain transformers loads without peft, resume
is bitwise, and each bad input is one line with its exit code before training starts."""

import json
import random
import shutil
import subprocess
import sys

import pytest

from helpers import (ONE_THREAD, REPO, build_recipe, cli_env, copy_without_dropout, error_lines, eval_log,
                     keyword_sentiment_rows, ner_sentence, resumed_from, run_cli, tensors, write_conll, write_csv,
                     rewind_to_checkpoint, write_recipe)
from llmctl.errors import EXIT_MODEL, EXIT_OK, EXIT_USAGE
from qa_helpers import flat_rows, make_articles, qa_recipe, write_jsonl, write_squad

ADAPTER_FILES = {"adapter_config.json", "adapter_model.safetensors"}
# Settings tuned on the tiny random-weight checkpoints: LoRA cannot move their frozen
# embeddings, so it needs a larger rank and more steps than full fine-tuning to separate them.
CLS = {"bert": ({"r": 16}, {"epochs": 10, "batch_size": 16, "learning_rate": 5e-3}),
       "llama": ({"r": 8}, {"epochs": 3, "batch_size": 16, "learning_rate": 1e-2})}


def finetune(recipe, *args) -> dict:
    result = run_cli("finetune", str(recipe), "--json", *args, env=ONE_THREAD)
    assert result.exit_code == EXIT_OK, result.stderr[-3000:]
    assert sum(line.startswith("LoRA r ") for line in result.stderr.splitlines()) == 1, result.stderr
    return result.json()


def losses(run_dir) -> list[float]:
    return [entry["loss"] for entry in eval_log(run_dir)]


def assert_saves_adapter(run_dir, result, heads=()):
    model_dir = run_dir / "model"
    names = {p.name for p in model_dir.iterdir()}
    assert ADAPTER_FILES <= names and "model.safetensors" not in names, names
    base = json.loads((model_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base.startswith("/") and (REPO / base / "config.json").is_file()  # absolute: loads from anywhere
    saved = tensors(model_dir / "adapter_model.safetensors")
    assert any("lora_A" in k for k in saved) and any("lora_B" in k for k in saved)
    for head in heads:  # the trained head travels with the adapter (peft#577)
        assert any(f".{head}." in k for k in saved), (head, sorted(saved)[:5])
    peft = result["peft"]
    assert 0 < peft["trainable_parameters"] < peft["total_parameters"] / 2
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["peft"]["trainable_parameters"] == peft["trainable_parameters"] and "LoRA" in env["cpu_speedups_note"]


def same_metrics(a: dict, b: dict, rel: float = 1e-5):
    assert a.keys() == b.keys()
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=rel, abs=1e-6), key


# -- classification: bert (head `classifier`) and llama (head `score`) ----------------------
@pytest.fixture(scope="module", params=["bert", "llama"])
def cls_run(request, tiny_models, tmp_path_factory):
    family = request.param
    tmp = tmp_path_factory.mktemp(f"lora-cls-{family}")
    train = write_csv(tmp / "train.csv", keyword_sentiment_rows(160, seed=0))
    valid = write_csv(tmp / "valid.csv", keyword_sentiment_rows(64, seed=1))
    peft, train_cfg = CLS[family]
    recipe = write_recipe(tmp / "r.yaml", tiny_models[family], train, valid, tmp / "run", peft=peft,
                          train=train_cfg | {"eval_every": 10, "save_every": 1000, "logging_steps": 50})
    return family, tmp, finetune(recipe)


def test_classification_lora_learns_and_saves_the_adapter_with_its_head(cls_run):
    family, tmp, result = cls_run
    seen = losses(tmp / "run")
    assert min(seen) < seen[0] * 0.7, seen
    assert result["metrics"]["accuracy"] >= 0.8
    assert_saves_adapter(tmp / "run", result, heads=["classifier" if family == "bert" else "score"])
    if family == "bert":  # the tiny BERT checkpoint has no pooler weights: it trains in full and is saved
        assert "bert.pooler.dense" in result["peft"]["modules_to_save"]


def test_eval_and_predict_on_an_adapter_run_match_training(cls_run):
    family, tmp, result = cls_run
    evaluated = run_cli("eval", str(tmp / "run"), "--json", env=ONE_THREAD)
    assert evaluated.exit_code == EXIT_OK, evaluated.stderr
    same_metrics(result["metrics"], evaluated.json()["metrics"])
    predicted = run_cli("predict", str(tmp / "run"), "--input", str(tmp / "valid.csv"), "--json", env=ONE_THREAD)
    assert predicted.exit_code == EXIT_OK, predicted.stderr
    rows = predicted.json()["predictions"]
    truth = [r["label"] for r in keyword_sentiment_rows(64, seed=1)]
    accuracy = sum(r["label"] == t for r, t in zip(rows, truth)) / len(rows)
    assert accuracy == pytest.approx(result["metrics"]["accuracy"])


LOGITS_WITHOUT_PEFT = """
import json, sys, torch
sys.modules["peft"] = None  # importing peft now fails: the export must not need it
from transformers import AutoModelForSequenceClassification, AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
enc = tok(json.loads(sys.argv[2]), padding=True, return_tensors="pt")
with torch.inference_mode():
    print(json.dumps(model(**enc).logits.tolist()))
"""


def test_export_merges_into_a_checkpoint_transformers_loads_without_peft(cls_run):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from llmctl.models.adapters import load_adapter_model

    family, tmp, _ = cls_run
    out = tmp / "export"
    exported = run_cli("export", str(tmp / "run"), "--output", str(out), "--json", env=ONE_THREAD)
    assert exported.exit_code == EXIT_OK, exported.stderr
    assert exported.json()["merged_adapter"] is True
    assert "model.safetensors" in {p.name for p in out.iterdir()} and not (out / "adapter_config.json").exists()
    texts = ["the movie was really great", "the plot was quite awful", "the cast"]
    plain = subprocess.run([sys.executable, "-c", LOGITS_WITHOUT_PEFT, str(out), json.dumps(texts)],
                           capture_output=True, text=True, env=cli_env(ONE_THREAD))
    assert plain.returncode == 0, plain.stderr
    tokenizer = AutoTokenizer.from_pretrained(tmp / "run" / "model")
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    adapted = load_adapter_model(AutoModelForSequenceClassification, tmp / "run" / "model")
    with torch.inference_mode():
        reference = adapted(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    assert torch.allclose(torch.tensor(json.loads(plain.stdout)), reference, atol=1e-5)
    # llmctl.json travels along: the export evaluates like the run
    evaluated = run_cli("eval", str(out), "--json", env=ONE_THREAD)
    assert evaluated.exit_code == EXIT_OK, evaluated.stderr
    again = run_cli("export", str(tmp / "run"), "--output", str(out))
    assert again.exit_code == EXIT_USAGE and "not empty" in error_lines(again.stderr)[0]


# -- NER, QA, causal LM, seq2seq ---------------------------------------------------------------
def test_ner_lora_learns_and_reloads(tiny_models, tmp_path):
    rng = random.Random(0)
    train = write_conll(tmp_path / "train.txt", [ner_sentence(rng) for _ in range(96)])
    valid = write_conll(tmp_path / "valid.txt", [ner_sentence(rng) for _ in range(32)])
    recipe = build_recipe(tmp_path / "r.yaml", "ner", tiny_models["bert"], tmp_path / "run",
                          {"train": str(train), "validation": str(valid), "test": str(valid), "max_length": 32},
                          peft={"r": 16},
                          train={"epochs": 6, "learning_rate": 1e-2, "eval_every": 12, "save_every": 1000,
                                 "logging_steps": 50})
    result = finetune(recipe)
    seen = losses(tmp_path / "run")
    assert seen[-1] < seen[0] / 2, seen
    assert_saves_adapter(tmp_path / "run", result, heads=["classifier"])
    evaluated = run_cli("eval", str(tmp_path / "run"), "--json", env=ONE_THREAD)
    assert evaluated.exit_code == EXIT_OK, evaluated.stderr
    same_metrics(result["metrics"], evaluated.json()["metrics"])
    # data.test is scored once after training with the saved (best) adapter, here the same rows
    same_metrics(result["metrics"], result["test_metrics"])


def test_qa_lora_learns_and_reloads(tiny_models, tmp_path):
    train = write_squad(tmp_path / "train.json", make_articles(n_articles=4, paragraphs=3, people=1, seed=0))
    valid_rows = flat_rows(make_articles(n_articles=1, paragraphs=4, people=1, seed=1))
    valid = write_jsonl(tmp_path / "valid.jsonl", valid_rows)
    recipe = qa_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, valid, tmp_path / "run", peft={"r": 16},
                       data={"max_length": 96, "doc_stride": 32},
                       train={"epochs": 6, "learning_rate": 5e-3, "eval_every": 6, "save_every": 1000,
                              "logging_steps": 50})
    result = finetune(recipe)
    seen = losses(tmp_path / "run")
    assert seen[-1] < seen[0] * 0.8, seen
    assert_saves_adapter(tmp_path / "run", result, heads=["qa_outputs"])
    evaluated = run_cli("eval", str(tmp_path / "run"), "--json", env=ONE_THREAD)
    assert evaluated.exit_code == EXIT_OK, evaluated.stderr
    same_metrics(result["metrics"], evaluated.json()["metrics"])
    # The merged model answers as the adapter run did: the adapter saw the segment ids too
    # (peft's own QA wrapper drops token_type_ids; the merged BERT uses them).
    exported = run_cli("export", str(tmp_path / "run"), "--output", str(tmp_path / "merged"), env=ONE_THREAD)
    assert exported.exit_code == EXIT_OK, exported.stderr
    merged = run_cli("eval", str(tmp_path / "merged"), "--data", str(valid), "--json", env=ONE_THREAD)
    assert merged.exit_code == EXIT_OK, merged.stderr
    same_metrics(result["metrics"], merged.json()["metrics"])


def test_causal_lm_lora_learns_generates_and_exports(tiny_models, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from llmctl.models.adapters import load_adapter_model

    rows = [{"text": f"the cat sat on the mat and the dog ran to the park {i % 5}"} for i in range(48)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    recipe = build_recipe(tmp_path / "r.yaml", "causal-lm", tiny_models["llama"], tmp_path / "run",
                          {"train": str(train), "validation": str(train), "max_length": 32},
                          # The final norm trains too: with it frozen, the tiny random model's tied
                          # embeddings cap every logit well below 1, and the loss could hardly move.
                          peft={"r": 8, "modules_to_save": ["norm"]},
                          train={"epochs": 6, "learning_rate": 1e-2, "save_every": 1000, "logging_steps": 50})
    result = finetune(recipe)
    seen = losses(tmp_path / "run")
    # Seen: 6.58 -> 6.24 (a full fine-tune, which also moves the embeddings, reaches ~1.2).
    assert all(b < a for a, b in zip(seen, seen[1:])) and seen[-1] < seen[0] - 0.25, seen
    assert_saves_adapter(tmp_path / "run", result)
    generated = run_cli("generate", str(tmp_path / "run"), "the cat sat", "--max-new-tokens", "4", "--json",
                        env=ONE_THREAD)
    assert generated.exit_code == EXIT_OK, generated.stderr
    assert generated.json()["results"][0]["completion_tokens"] == 4
    out = tmp_path / "export"
    assert run_cli("export", str(tmp_path / "run"), "--output", str(out)).exit_code == EXIT_OK
    ids = torch.tensor([[5, 17, 42, 8, 3]])
    with torch.inference_mode():
        merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)(ids).logits
        adapted = load_adapter_model(AutoModelForCausalLM, tmp_path / "run" / "model")(input_ids=ids).logits
    assert torch.allclose(merged, adapted, atol=1e-4)


def test_seq2seq_lora_learns_and_reloads(tiny_models, tmp_path):
    from test_seq2seq import label_word_rows, s2s_recipe

    train = write_jsonl(tmp_path / "train.jsonl", label_word_rows(40))
    valid = write_jsonl(tmp_path / "valid.jsonl", label_word_rows(10))
    recipe = s2s_recipe(tmp_path / "r.yaml", tiny_models["t5"], train, valid, tmp_path / "run",
                        train_cfg={"epochs": 4, "learning_rate": 1e-2, "save_every": 1000})
    recipe.write_text(recipe.read_text() + "peft:\n  r: 8\n")
    result = finetune(recipe)
    seen = losses(tmp_path / "run")
    assert seen[-1] < seen[0], seen
    assert_saves_adapter(tmp_path / "run", result)
    assert set(result["peft"]["target_modules"]) == {"q", "k", "v", "o", "wi", "wo"}
    evaluated = run_cli("eval", str(tmp_path / "run"), "--json", env=ONE_THREAD)
    assert evaluated.exit_code == EXIT_OK, evaluated.stderr
    same_metrics(result["metrics"], evaluated.json()["metrics"])


# -- the CPU speed-ups compose with LoRA ----------------------------------------------------------
def test_cpu_speedups_train_the_same_adapter(tiny_models, tmp_path):
    """With dropout off (the speed-ups draw dropout masks differently), a LoRA run with the CPU
    speed-ups (fast attention, the BERT first-position shortcut) ends with the adapter of the
    stock model, up to float rounding."""
    base = copy_without_dropout(tiny_models["bert"], tmp_path / "base")
    train = write_csv(tmp_path / "train.csv", keyword_sentiment_rows(48))
    recipe = write_recipe(tmp_path / "r.yaml", base, train, None, tmp_path / "run", peft={"r": 4, "dropout": 0.0},
                          train={"epochs": 2, "learning_rate": 5e-3, "save_every": 1000})
    finetune(recipe, "--output-dir", str(tmp_path / "fast"))
    assert {"fast_attention", "first_position_only"} <= set(
        json.loads((tmp_path / "fast" / "environment.json").read_text())["cpu_speedups"])
    stock = run_cli("finetune", str(recipe), "--output-dir", str(tmp_path / "stock"), "--json",
                    env=ONE_THREAD | {"LLMCTL_CPU_SPEEDUPS": "0"})
    assert stock.exit_code == EXIT_OK, stock.stderr
    a, b = (tensors(tmp_path / d / "model" / "adapter_model.safetensors") for d in ("fast", "stock"))
    assert a.keys() == b.keys()
    moved = [k for k in a if "lora_B" in k and a[k].abs().max() > 1e-3]
    assert moved, "the adapter never left its zero start"
    for key in a:
        assert torch_allclose(a[key], b[key]), key


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_decoder_speedups_train_the_same_chat_adapter(tiny_models, tmp_path, precision):
    """Chat LoRA on the tiny Llama (grouped-query heads): with the LM head at learned tokens only
    and the fast attention, an fp32 run ends with the stock run's adapter up to float rounding.
    In bf16 the frozen base is stored in bf16 (tests/train/test_frozen_weights.py: bitwise the same
    step), and `llmctl eval` on the saved run (the fp32 base, cast by autocast at each call)
    gives the metrics the run measured with its bf16 base."""
    import torch

    from test_chat_data import chat_recipe, qa_rows, write_jsonl as write_chat

    train, valid = write_chat(tmp_path / "train.jsonl", qa_rows(24)), write_chat(tmp_path / "valid.jsonl", qa_rows(6))
    recipe = chat_recipe(tmp_path / "r.yaml", tiny_models["llama"], train, valid,
                         train_cfg={"max_steps": 12, "eval_every": 12, "save_every": 1000, "precision": precision})
    recipe.write_text(recipe.read_text() + "peft:\n  r: 4\n  dropout: 0.0\n")
    fast = finetune(recipe, "--output-dir", str(tmp_path / "fast"))
    applied = set(json.loads((tmp_path / "fast" / "environment.json").read_text())["cpu_speedups"])
    assert {"fast_attention", "learned_tokens_only"} <= applied
    assert ("frozen_weights_bf16" in applied) == (precision == "bf16")
    if precision == "fp32":  # in bf16 sdpa's own rounding differs from the fp32 softmax's after a few steps
        stock = run_cli("finetune", str(recipe), "--output-dir", str(tmp_path / "stock"), "--json",
                        env=ONE_THREAD | {"LLMCTL_CPU_SPEEDUPS": "0"})
        assert stock.exit_code == EXIT_OK, stock.stderr
        a, b = (tensors(tmp_path / d / "model" / "adapter_model.safetensors") for d in ("fast", "stock"))
        assert a.keys() == b.keys() and any("lora_B" in k and a[k].abs().max() > 1e-3 for k in a)
        for key in a:
            assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-5), (key, (a[key] - b[key]).abs().max())
    evaluated = run_cli("eval", str(tmp_path / "fast"), "--json", env=ONE_THREAD)
    assert evaluated.exit_code == EXIT_OK, evaluated.stderr
    # bf16 products are summed in a kernel-dependent order: on an AVX2-only CPU (no native bf16) the
    # run's and eval's losses differed by 1e-5 relative, perplexity (its exp) by 7e-5; a wrong base
    # or adapter moves them by far more.
    same_metrics(fast["metrics"], evaluated.json()["metrics"], rel=1e-5 if precision == "fp32" else 2e-4)


def torch_allclose(x, y) -> bool:
    import torch

    return torch.allclose(x, y, rtol=1e-4, atol=1e-5)


# -- resume ------------------------------------------------------------------------------------
def test_resume_with_an_adapter_is_bitwise(tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", keyword_sentiment_rows(48))
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, None, tmp_path / "full", peft={"r": 4},
                          train={"epochs": 2, "save_every": 2, "keep_checkpoints": 10})
    finetune(recipe)
    checkpoint = tmp_path / "full" / "checkpoints" / "step-0000004"
    saved = tensors(checkpoint / "model.safetensors")
    assert saved and all("lora_" in k or "modules_to_save" in k for k in saved), sorted(saved)[:5]  # only what trains
    resumed = rewind_to_checkpoint(tmp_path / "full", checkpoint, tmp_path / "resumed")
    result = run_cli("finetune", str(recipe), "--output-dir", str(resumed), "--resume", "--json", env=ONE_THREAD)
    assert result.exit_code == EXIT_OK, result.stderr
    assert resumed_from(result.stderr) == resumed / "checkpoints" / checkpoint.name
    a, b = (tensors(d / "model" / "adapter_model.safetensors") for d in (tmp_path / "full", resumed))
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] == b[key]).all(), key

    # The resume check compares peft's version too (issue 27 item 21): a checkpoint of another peft is refused.
    from importlib.metadata import version

    other = rewind_to_checkpoint(tmp_path / "full", checkpoint, tmp_path / "other-peft")
    loop = json.loads((other / "checkpoints" / checkpoint.name / "loop.json").read_text())
    assert loop["fingerprint"]["versions"]["peft"] == version("peft")
    loop["fingerprint"]["versions"]["peft"] = "0.0.1"
    (other / "checkpoints" / checkpoint.name / "loop.json").write_text(json.dumps(loop))
    refused = run_cli("finetune", str(recipe), "--output-dir", str(other), "--resume", env=ONE_THREAD)
    assert refused.exit_code == EXIT_USAGE
    assert f"peft 0.0.1 in the checkpoint, {version('peft')} now" in refused.stderr


# -- bad input -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tiny_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lora-bad")
    return tmp, write_csv(tmp / "train.csv", keyword_sentiment_rows(16))


@pytest.mark.parametrize("peft, extra, expected", [
    ({"target_modules": ["q_proj"]}, {}, "peft.target_modules: 'q_proj' matches no Linear layer"),
    ({"r": 0}, {}, "peft.r"),
    ({"method": "prefix"}, {}, "peft.method"),
    ({"method": "qlora"}, {}, "needs a CUDA GPU"),
    ({"modules_to_save": ["encoder"]}, {}, "holds LoRA target layers"),
    ({"modules_to_save": ["head"]}, {}, "'head' is no module"),
    ({}, {"zero_shot": {"template": "{sentence}", "verbalizers": {"negative": " bad", "positive": " good"}}},
     "zero_shot scores without training"),
], ids=["targets", "rank", "method", "qlora-on-cpu", "saves-the-backbone", "no-such-module", "zero-shot"])
def test_bad_peft_settings_fail_before_training(small, tiny_models, peft, extra, expected):
    tmp, train = small
    out = tmp / f"run-{abs(hash(expected))}"
    recipe = write_recipe(tmp / "r.yaml", tiny_models["bert"], train, None, out, peft={"r": 4} | peft, **extra)
    result = run_cli("finetune", str(recipe), "--device", "cpu")
    assert result.exit_code == EXIT_USAGE, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not out.exists() or not any(p.name != "run.lock" for p in out.iterdir())
    if "target_modules" in peft:  # the fix is in the message: the model's layer names
        assert "query" in error_lines(result.stderr)[0] and "dense" in error_lines(result.stderr)[0]


def test_missing_base_and_a_different_base_are_one_line(small, tiny_models, tmp_path):
    _, train = small
    base = tmp_path / "base"
    shutil.copytree(tiny_models["bert"], base)
    recipe = write_recipe(tmp_path / "r.yaml", base, train, None, tmp_path / "run", peft={"r": 4})
    finetune(recipe)
    base.rename(tmp_path / "moved")
    evaluated = run_cli("eval", str(tmp_path / "run"), "--data", str(train))
    assert evaluated.exit_code == EXIT_MODEL
    assert len(error_lines(evaluated.stderr)) == 1 and f"needs its base model {base}" in evaluated.stderr
    exported = run_cli("export", str(tmp_path / "run"), "--output", str(tmp_path / "x"))
    assert exported.exit_code == EXIT_MODEL and str(base) in exported.stderr
    # The moved copy holds the same weights: merging into it is allowed; another model is not.
    other = run_cli("export", str(tmp_path / "run"), "--output", str(tmp_path / "x"),
                    "--base", str(tiny_models["gpt2"]))
    assert other.exit_code == EXIT_USAGE and "is not the base this adapter was trained on" in other.stderr
    moved = run_cli("export", str(tmp_path / "run"), "--output", str(tmp_path / "x"), "--base", str(tmp_path / "moved"))
    assert moved.exit_code == EXIT_OK, moved.stderr
    # ONNX export merges first too, so without --base it stops the same way, leaving nothing
    onnx = run_cli("export", str(tmp_path / "run"), "--output", str(tmp_path / "y"), "--format", "onnx")
    assert onnx.exit_code == EXIT_MODEL and str(base) in onnx.stderr and not (tmp_path / "y").exists()
