"""task: seq2seq (T5 family) through the real CLI: finetune -> eval -> predict, exact resume, bad input."""

import json
import shutil

import pytest
import yaml

from helpers import NEGATIVE, POSITIVE, run_cli, write_jsonl
from llmctl.errors import EXIT_DATA, EXIT_USAGE

SUMMARY_METRICS = {"loss", "rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "accuracy", "gen_len"}


def label_word_rows(n):
    """Sentiment as label words: the T5 way of doing classification."""
    return [{"source": (POSITIVE if i % 2 == 0 else NEGATIVE)[(i // 2) % 10],
             "target": "positive" if i % 2 == 0 else "negative"} for i in range(n)]


def s2s_recipe(path, model, train, valid, out, data=None, train_cfg=None):
    recipe = {"task": "seq2seq", "model": {"name_or_path": str(model)},
              "data": {"train": str(train), "validation": str(valid) if valid else None, "source_prefix": "sentiment: ",
                       "max_length": 24, "max_target_length": 6} | (data or {}),
              "train": {"epochs": 3, "batch_size": 8, "eval_batch_size": 8, "learning_rate": 3e-3,
                        "precision": "fp32", "logging_steps": 5} | (train_cfg or {}),
              "output_dir": str(out)}
    path.write_text(f"# llmctl finetune {path}\n" + yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("s2s")
    return root, write_jsonl(root / "train.jsonl", label_word_rows(40)), write_jsonl(root / "valid.jsonl", label_word_rows(10))


def test_finetune_eval_predict(tiny_models, files, tmp_path):
    root, train, valid = files
    recipe = s2s_recipe(tmp_path / "r.yaml", tiny_models["t5"], train, valid, tmp_path / "run")
    result = run_cli("finetune", str(recipe), "--json")
    assert result.exit_code == 0, result.stderr
    out = result.json()
    assert set(out["metrics"]) == SUMMARY_METRICS
    assert 0 <= out["metrics"]["rougeL"] <= 1 and 0 <= out["metrics"]["bleu"] <= 100
    # Teacher-forced loss on the validation targets falls from one epoch to the next.
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and losses[-1] < losses[0]
    meta = json.loads((tmp_path / "run" / "model" / "llmctl.json").read_text())
    assert meta["task"] == "seq2seq" and meta["data"]["source_prefix"] == "sentiment: "

    # eval on the run directory needs no recipe and scores the best model again (eval runs
    # in bf16 where the CPU has it, training ran in fp32: close, not equal).
    evaluated = run_cli("eval", str(tmp_path / "run"), "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    scores = evaluated.json()["metrics"]
    assert set(scores) == SUMMARY_METRICS
    assert scores["loss"] == pytest.approx(out["metrics"]["loss"], rel=2e-2)

    # predict generates the target text, one row per input, in input order.
    (tmp_path / "in.txt").write_text("a great and moving film\ni hated the story\n")
    predicted = run_cli("predict", str(tmp_path / "run"), "--input", str(tmp_path / "in.txt"))
    assert predicted.exit_code == 0, predicted.stderr
    rows = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert [r["source"] for r in rows] == ["a great and moving film", "i hated the story"]
    assert all(isinstance(r["prediction"], str) for r in rows)
    one = run_cli("predict", str(tmp_path / "run"), "--input", "-", "--batch-size", "1", "--json",
                  input=json.dumps({"source": "i hated the story"}) + "\n")
    assert one.exit_code == 0, one.stderr
    # Batching does not change what is generated ("line" numbers the input line, so it differs).
    same = ("source", "prediction")
    assert [{k: r[k] for k in same} for r in one.json()["predictions"]] == [{k: rows[1][k] for k in same}]


def test_resume_matches_uninterrupted(tiny_models, files, tmp_path):
    # Evaluation (with generation) runs between the checkpoints; it must not disturb training.
    root, train, valid = files
    recipe = s2s_recipe(tmp_path / "r.yaml", tiny_models["t5"], train, valid, tmp_path / "full",
                        train_cfg={"epochs": 2, "gradient_accumulation_steps": 2, "save_every": 1,
                                   "eval_every": 2, "keep_checkpoints": 10, "warmup_ratio": 0.2,
                                   "metric_for_best": "loss"})
    full = run_cli("finetune", str(recipe), "--json")
    assert full.exit_code == 0, full.stderr
    assert full.json()["train"]["steps"] == 6
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full", resumed)
    for ckpt in (resumed / "checkpoints").iterdir():
        if int(ckpt.name.split("-")[1]) > 3:
            shutil.rmtree(ckpt)
    shutil.rmtree(resumed / "model")
    (resumed / "metrics.json").unlink()
    again = run_cli("finetune", str(recipe), "--output-dir", str(resumed), "--resume", "--json")
    assert again.exit_code == 0, again.stderr
    assert "resuming from" in again.stderr and again.json()["train"]["steps"] == 6
    assert again.json()["metrics"] == full.json()["metrics"]
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(resumed / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_bad_input_is_refused_before_the_model(tiny_models, files, tmp_path):
    root, train, valid = files
    no_target = write_jsonl(tmp_path / "no_target.jsonl", [{"source": "a film", "summary": "x"}])
    result = run_cli("finetune", str(s2s_recipe(tmp_path / "a.yaml", tiny_models["t5"], no_target, None, tmp_path / "a")))
    assert result.exit_code == EXIT_DATA
    assert "data.target_column: column 'target' is not in" in result.stderr and "summary" in result.stderr

    empty = write_jsonl(tmp_path / "empty.jsonl", label_word_rows(3)[:2] + [{"source": "  ", "target": "negative"}])
    result = run_cli("finetune", str(s2s_recipe(tmp_path / "b.yaml", tiny_models["t5"], empty, None, tmp_path / "b")))
    assert result.exit_code == EXIT_DATA
    assert f"{empty}:3: column 'source' is empty" in result.stderr

    gpt2 = s2s_recipe(tmp_path / "c.yaml", tiny_models["gpt2"], train, None, tmp_path / "c")
    result = run_cli("finetune", str(gpt2))
    assert result.exit_code == EXIT_USAGE
    assert "is a gpt2 model (decoder-only); task seq2seq needs an encoder-decoder" in result.stderr
    assert "use task: causal-lm" in result.stderr
    bert = run_cli("finetune", str(s2s_recipe(tmp_path / "d.yaml", tiny_models["bert"], train, None, tmp_path / "d")))
    assert bert.exit_code == EXIT_USAGE and "classification, ner or qa" in bert.stderr
    assert "Traceback" not in result.stderr + bert.stderr
    assert not (tmp_path / "c").exists()  # refused before a run directory (or the weights) appeared


def test_integer_targets_become_label_words(tmp_path, capsys):
    import datasets

    from llmctl.console import tell
    from llmctl.errors import DataError
    from llmctl.tasks.seq2seq import Seq2SeqData, Seq2SeqTask

    # A Hub-style ClassLabel column (here a local parquet folder) is written as its names.
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    (tmp_path / "hub").mkdir()
    datasets.Dataset.from_dict({"sentence": ["fine", "bad"], "label": [1, 0]}, features=features).to_parquet(
        str(tmp_path / "hub" / "train.parquet"))
    task = Seq2SeqTask(Seq2SeqData(dataset=str(tmp_path / "hub"), source_column="sentence", target_column="label"))
    assert task.load_split("train", "train").targets == ["positive", "negative"]

    # Plain integer targets take data.label_words; an id outside them names the row.
    path = write_jsonl(tmp_path / "ids.jsonl", [{"source": "fine", "target": 1}, {"source": "bad", "target": 2}])
    words = Seq2SeqTask(Seq2SeqData(label_words=["negative", "positive"]))
    with pytest.raises(DataError, match=rf"{path}:2: column 'target' holds id 2, outside the 2 label words"):
        words.load_split("train", str(path))
    capsys.readouterr()
    # Without words the ids are written as digits, and a warning names data.label_words.
    # (the task returns its warnings as notes; tell shows them as finetune does)
    assert tell(Seq2SeqTask(Seq2SeqData()).load_split("train", str(path))).targets == ["1", "2"]
    assert (f"warning: data.train: column 'target' of {path} holds integers (1, 2) and there are no label words"
            in capsys.readouterr().err)
    text = write_jsonl(tmp_path / "text.jsonl", [{"source": "fine", "target": "positive"}])
    assert tell(words.load_split("train", str(text))).targets == ["positive"]
    assert "data.label_words is set but column 'target'" in capsys.readouterr().err
    assert tell(Seq2SeqTask(Seq2SeqData()).load_split("train", str(text))).targets == ["positive"]
    assert capsys.readouterr().err == ""  # text targets, no words: nothing to say
