"""task: causal-lm (GPT-2 family): loss masking, packing, perplexity, CLI finetune -> eval -> predict,
exact resume, and bad input."""

import json
import math
import shutil

import pytest
import yaml

from helpers import NEGATIVE, POSITIVE, run_cli, write_jsonl
from llmctl.console import tell
from llmctl.errors import EXIT_DATA, EXIT_USAGE, RecipeError


def pair_rows(n):
    return [{"prompt": f"Review: {(POSITIVE if i % 2 == 0 else NEGATIVE)[(i // 2) % 10]}\nSentiment:",
             "completion": " positive" if i % 2 == 0 else " negative"} for i in range(n)]


def text_rows(n):
    return [{"text": (POSITIVE + NEGATIVE)[i % 20] + " ."} for i in range(n)]


def lm_recipe(path, model, train, valid, out, data=None, train_cfg=None):
    recipe = {"task": "causal-lm", "model": {"name_or_path": str(model)},
              "data": {"train": str(train), "validation": str(valid) if valid else None, "max_length": 32,
                       "max_new_tokens": 3} | (data or {}),
              "train": {"epochs": 3, "batch_size": 8, "eval_batch_size": 8, "learning_rate": 3e-3,
                        "precision": "fp32", "logging_steps": 5} | (train_cfg or {}),
              "output_dir": str(out)}
    path.write_text(f"# llmctl finetune {path}\n" + yaml.safe_dump(recipe, sort_keys=False))
    return path


PAIRS = {"prompt_column": "prompt", "completion_column": "completion"}


@pytest.fixture(scope="module")
def gpt2_tokenizer(tiny_models):
    from llmctl.config.schema import ModelConfig
    from llmctl.models.load import load_tokenizer

    return load_tokenizer(ModelConfig(name_or_path=str(tiny_models["gpt2"])))


def task_for(tmp_path, rows, **data):
    from llmctl.tasks.causal_lm import CausalLMData, CausalLMTask

    path = write_jsonl(tmp_path / "d.jsonl", rows)
    task = CausalLMTask(CausalLMData(train=str(path), validation=None, **data))
    return task, task.load_split("train", str(path))


def test_prompt_tokens_are_masked_and_completion_ends_with_eos(tmp_path, gpt2_tokenizer):
    task, split = task_for(tmp_path, pair_rows(2), **PAIRS)
    features = task.featurize(split, gpt2_tokenizer)
    eos = gpt2_tokenizer.eos_token_id
    prompt = gpt2_tokenizer(pair_rows(1)[0]["prompt"])["input_ids"]
    completion = gpt2_tokenizer(" positive", add_special_tokens=False)["input_ids"]
    assert features.columns["input_ids"][0] == prompt + completion + [eos]
    assert features.columns["labels"][0] == [-100] * len(prompt) + completion + [eos]


def test_truncation_cuts_the_prompt_first(tmp_path, gpt2_tokenizer):
    long = {"prompt": "the plot was dull and " * 20, "completion": " negative"}
    task, split = task_for(tmp_path, [long], max_length=12, **PAIRS)
    ids, labels = task.featurize(split, gpt2_tokenizer).columns.values()
    completion = gpt2_tokenizer(" negative", add_special_tokens=False)["input_ids"] + [gpt2_tokenizer.eos_token_id]
    assert len(ids[0]) == 12 and ids[0][-len(completion):] == completion
    assert labels[0][-len(completion):] == completion and labels[0][: 12 - len(completion)] == [-100] * (12 - len(completion))


def test_plain_text_trains_on_every_token_and_packing_fills_blocks(tmp_path, gpt2_tokenizer):
    rows = text_rows(6)
    task, split = task_for(tmp_path, rows)
    plain = task.featurize(split, gpt2_tokenizer)
    assert plain.columns["labels"] == plain.columns["input_ids"]
    assert all(ids[-1] == gpt2_tokenizer.eos_token_id for ids in plain.columns["input_ids"])

    packed_task, packed_split = task_for(tmp_path, rows, packing=True, max_length=8)
    packed = packed_task.featurize(packed_split, gpt2_tokenizer)
    stream = [t for ids in plain.columns["input_ids"] for t in ids]
    assert [t for ids in packed.columns["input_ids"] for t in ids] == stream  # nothing cut, nothing padded
    assert all(len(ids) == 8 for ids in packed.columns["input_ids"][:-1])
    assert len(packed) == math.ceil(len(stream) / 8)
    # Validation is never packed: one example per row, so perplexity does not depend on packing.
    eval_split = packed_task.load_split("validation", packed_split.where)
    assert len(packed_task.featurize(eval_split, gpt2_tokenizer)) == 6


def test_perplexity_is_exp_of_the_token_weighted_mean_loss(tiny_models, gpt2_tokenizer, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    task, split = task_for(tmp_path, pair_rows(4), **PAIRS)
    features = task.featurize(split, gpt2_tokenizer)
    batch = task.collate(features.rows(range(4)), gpt2_tokenizer)
    batch.pop("index")
    model = AutoModelForCausalLM.from_pretrained(tiny_models["gpt2"]).eval()
    with torch.no_grad():
        outputs = model(**batch)
    kept = task.outputs_to_keep(outputs, batch)
    # Summed per example then divided by all tokens: the model's own batch loss, exactly.
    metrics = task.compute_metrics({k: list(v) for k, v in kept.items()}, features, split)
    assert metrics["loss"] == pytest.approx(float(outputs.loss), rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    # Examples with more tokens weigh more: (2.0 + 6.0) / (1 + 3) tokens, not the mean of 2.0 and 2.0.
    by_hand = task.compute_metrics({"nll": [2.0, 6.0], "tokens": [1, 3]}, features, split)
    assert by_hand == {"loss": 2.0, "perplexity": pytest.approx(math.exp(2.0))}


def test_finetune_eval_predict(tiny_models, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", pair_rows(40))
    valid = write_jsonl(tmp_path / "valid.jsonl", pair_rows(10))
    recipe = lm_recipe(tmp_path / "r.yaml", tiny_models["gpt2"], train, valid, tmp_path / "run", data=PAIRS)
    result = run_cli("finetune", str(recipe), "--json")
    assert result.exit_code == 0, result.stderr
    metrics = result.json()["metrics"]
    assert set(metrics) == {"loss", "perplexity"}
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and losses[-1] < losses[0]

    evaluated = run_cli("eval", str(tmp_path / "run"), "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert evaluated.json()["metrics"]["perplexity"] == pytest.approx(metrics["perplexity"], rel=2e-2)

    prompts = [r["prompt"] for r in pair_rows(3)] + ["Review: a very long and rather dull film\nSentiment:"]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    batched = run_cli("predict", str(tmp_path / "run"), "--input", str(tmp_path / "p.jsonl"), "--json")
    single = run_cli("predict", str(tmp_path / "run"), "--input", str(tmp_path / "p.jsonl"), "--json",
                     "--batch-size", "1")
    assert batched.exit_code == 0 and single.exit_code == 0, batched.stderr + single.stderr
    rows = batched.json()["predictions"]
    assert [r["prompt"] for r in rows] == prompts
    assert all(isinstance(r["completion"], str) for r in rows)
    # Prompts of different lengths are padded on the left, so batching changes nothing.
    assert rows == single.json()["predictions"]


def test_packed_plain_text_resume_matches_uninterrupted(tiny_models, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", text_rows(30))
    recipe = lm_recipe(tmp_path / "r.yaml", tiny_models["gpt2"], train, None, tmp_path / "full",
                       data={"packing": True, "max_length": 16},
                       train_cfg={"epochs": 2, "batch_size": 4, "gradient_accumulation_steps": 2, "save_every": 1,
                                  "keep_checkpoints": 10})
    full = run_cli("finetune", str(recipe), "--json")
    assert full.exit_code == 0, full.stderr
    steps = full.json()["train"]["steps"]
    assert steps == 6  # 17 blocks of 16 tokens, 5 batches, 3 steps per epoch
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full", resumed)
    for ckpt in (resumed / "checkpoints").iterdir():
        if int(ckpt.name.split("-")[1]) > 2:  # mid-epoch
            shutil.rmtree(ckpt)
    shutil.rmtree(resumed / "model")
    (resumed / "metrics.json").unlink()
    again = run_cli("finetune", str(recipe), "--output-dir", str(resumed), "--resume", "--json")
    assert again.exit_code == 0, again.stderr
    assert "resuming from" in again.stderr and again.json()["train"]["steps"] == steps
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(resumed / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_bad_input_is_refused_before_the_model(tiny_models, tmp_path):
    no_completion = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "Review: fine\nSentiment:", "answer": " ok"}])
    result = run_cli("finetune", str(lm_recipe(tmp_path / "a.yaml", tiny_models["gpt2"], no_completion, None,
                                               tmp_path / "a", data=PAIRS)))
    assert result.exit_code == EXIT_DATA
    assert "data.completion_column: column 'completion' is not in" in result.stderr and "answer" in result.stderr

    empty = write_jsonl(tmp_path / "b.jsonl", pair_rows(2) + [{"prompt": "Review: fine\nSentiment:", "completion": ""}])
    result = run_cli("finetune", str(lm_recipe(tmp_path / "b.yaml", tiny_models["gpt2"], empty, None,
                                               tmp_path / "b", data=PAIRS)))
    assert result.exit_code == EXIT_DATA and f"{empty}:3: column 'completion' is empty" in result.stderr

    blank = write_jsonl(tmp_path / "c.jsonl", text_rows(2) + [{"text": None}])
    result = run_cli("finetune", str(lm_recipe(tmp_path / "c.yaml", tiny_models["gpt2"], blank, None, tmp_path / "c")))
    assert result.exit_code == EXIT_DATA and f"{blank}:3: column 'text' is empty" in result.stderr

    t5 = run_cli("finetune", str(lm_recipe(tmp_path / "d.yaml", tiny_models["t5"], blank, None, tmp_path / "d")))
    assert t5.exit_code == EXIT_DATA  # the data is checked first ...
    good = write_jsonl(tmp_path / "e.jsonl", text_rows(4))
    t5 = run_cli("finetune", str(lm_recipe(tmp_path / "e.yaml", tiny_models["t5"], good, None, tmp_path / "e")))
    assert t5.exit_code == EXIT_USAGE  # ... then the architecture, before any weights load
    assert "is a t5 model (encoder-decoder); task causal-lm needs a decoder-only" in t5.stderr
    assert "use task: seq2seq" in t5.stderr and "Traceback" not in t5.stderr
    assert not (tmp_path / "e").exists()


def test_prompt_and_completion_columns_go_together(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("task: causal-lm\nmodel: {name_or_path: m}\ndata: {train: t.jsonl, completion_column: answer}\n")
    from llmctl.tasks.recipe import load_recipe

    with pytest.raises(RecipeError, match="prompt_column and data.completion_column go together"):
        load_recipe(str(path))


def test_skip_empty_drops_blank_rows_with_a_note(tmp_path, capsys):
    task, split = task_for(tmp_path, text_rows(2) + [{"text": ""}, {"text": "   "}], skip_empty=True)
    assert split.prompts == [r["text"] for r in text_rows(2)]
    tell(split)  # the task returns the note; the caller shows it
    assert "skipped 2 empty row(s) (data.skip_empty)" in capsys.readouterr().err
