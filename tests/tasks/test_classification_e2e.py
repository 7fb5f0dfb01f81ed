"""End to end through the real CLI: finetune -> eval -> predict, for each model family."""

import json

import pytest

from helpers import ONE_THREAD, error_lines, keyword_sentiment_rows, run_cli, sentiment_rows, write_csv, write_recipe
from llmctl.errors import EXIT_GATE, EXIT_OK, EXIT_USAGE


@pytest.fixture
def sentiment_files(tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(40, string_labels=True))
    valid = write_csv(tmp_path / "valid.csv", sentiment_rows(12, string_labels=True))
    return train, valid


@pytest.mark.parametrize("family", ["bert", "gpt2", "t5"])
def test_finetune_eval_predict(family, tiny_models, sentiment_files, tmp_path):
    train, valid = sentiment_files
    run_dir = tmp_path / "run"
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models[family], train, valid, run_dir,
                          train={"epochs": 2, "save_every": 3})
    result = run_cli("finetune", str(recipe), "--json")
    assert result.exit_code == 0, result.stderr
    out = result.json()
    assert set(out["metrics"]) >= {"loss", "accuracy", "f1", "matthews_correlation"}
    assert out["train"]["samples"] == 80 and out["train"]["num_processes"] == 1
    assert out["train"]["samples_per_second"] > 0
    assert "step 1/10" in result.stderr  # plain progress lines: stderr is not a terminal

    # The run directory holds what DESIGN.md promises, and plain transformers can load the model.
    for name in ("recipe.yaml", "environment.json", "metrics.jsonl", "metrics.json", "model/llmctl.json",
                 "model/model.safetensors", "model/config.json"):
        assert (run_dir / name).exists(), name
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2  # one per epoch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(run_dir / "model")
    assert config.id2label == {0: "negative", 1: "positive"}
    assert config.pad_token_id is not None  # GPT-2: eos reused as pad and written into the config
    AutoModelForSequenceClassification.from_pretrained(run_dir / "model")

    evaluated = run_cli("eval", str(run_dir), "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert evaluated.json()["metrics"]["accuracy"] == pytest.approx(out["metrics"]["accuracy"])

    inputs = tmp_path / "in.txt"
    inputs.write_text("a great and moving film\n\ntruly awful acting\n")
    predicted = run_cli("predict", str(run_dir), "--input", str(inputs))
    assert predicted.exit_code == 0, predicted.stderr
    rows = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert [r["sentence"] for r in rows] == ["a great and moving film", "truly awful acting"]
    assert all(r["label"] in ("negative", "positive") and 0.5 <= r["score"] <= 1 for r in rows)


def test_eval_gate_and_existing_run_is_not_overwritten(tiny_models, tmp_path):
    # A separable toy set the tiny BERT learns for every seed tried (1, 2, 3, 42): accuracy 1.0,
    # loss 0.01-0.04 on held-out rows; the best model is picked by loss, so model/ is the last.
    train = write_csv(tmp_path / "train.csv", keyword_sentiment_rows(160, seed=0))
    valid = write_csv(tmp_path / "valid.csv", keyword_sentiment_rows(64, seed=1))
    run_dir = tmp_path / "run"
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, valid, run_dir,
                          train={"epochs": 6, "batch_size": 16, "learning_rate": 5e-3, "metric_for_best": "loss",
                                 "save_every": 1000})
    assert run_cli("finetune", str(recipe), env=ONE_THREAD).exit_code == 0
    before = (run_dir / "model" / "model.safetensors").read_bytes()

    again = run_cli("finetune", str(recipe))
    assert again.exit_code == EXIT_USAGE
    assert "already exists" in again.stderr and "--overwrite" in again.stderr
    assert (run_dir / "model" / "model.safetensors").read_bytes() == before

    # Gates the trained model must pass: they fail for a model that did not learn (accuracy 0.5, loss 0.69).
    passed = run_cli("eval", str(run_dir), "--data", str(valid), "--fail-under", "accuracy=0.9", "--fail-under",
                     "f1=0.9", "--fail-over", "loss=0.3", "--json", env=ONE_THREAD)
    assert passed.exit_code == EXIT_OK, passed.stderr
    metrics = passed.json()["metrics"]
    assert passed.json()["gates"] == {"passed": True, "thresholds": {"accuracy": 0.9, "f1": 0.9},
                                      "ceilings": {"loss": 0.3}, "failed": []}

    failed = run_cli("eval", str(run_dir), "--fail-under", "accuracy=1.01", "--json", env=ONE_THREAD)
    assert failed.exit_code == EXIT_GATE
    assert failed.json()["gates"] == {"passed": False, "thresholds": {"accuracy": 1.01}, "ceilings": {},
                                      "failed": [f"accuracy {metrics['accuracy']:.4f} < 1.01"]}
    assert "Quality gate failed: accuracy" in failed.stderr

    # One gate of two fails: only it is named; the table still prints.
    ceiling = run_cli("eval", str(run_dir), "--fail-under", "accuracy=0.9", "--fail-over", "loss=0.0001", env=ONE_THREAD)
    assert ceiling.exit_code == EXIT_GATE
    assert error_lines(ceiling.stderr) == [f"error: Quality gate failed: loss {metrics['loss']:.4f} > 0.0001."]
    assert "accuracy" in ceiling.stdout
    unknown = run_cli("eval", str(run_dir), "--fail-under", "acuracy=0.5")
    assert unknown.exit_code == EXIT_USAGE and "no such metric" in unknown.stderr


def test_pairs_regression_headerless_and_formats(tiny_models, tmp_path):
    """Sentence pairs with float targets (STS-B style) from a headerless TSV; eval on jsonl."""
    rows = [{"a": s, "b": t, "score": round((i % 6) * 0.8 + 0.1, 2)}
            for i, (s, t) in enumerate(zip(sentiment_rows(24, True), reversed(sentiment_rows(24, True))))]
    rows = [{"a": r["a"]["sentence"], "b": r["b"]["sentence"], "score": r["score"]} for r in rows]
    train = write_csv(tmp_path / "train.tsv", rows, delimiter="\t", header=False)
    valid = tmp_path / "valid.jsonl"
    valid.write_text("".join(json.dumps(r) + "\n" for r in rows[:8]))
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, valid, tmp_path / "run",
                          data={"text_columns": ["a", "b"], "label_column": "score", "column_names": ["a", "b", "score"],
                                "test": str(valid)})
    result = run_cli("finetune", str(recipe), "--json", "--max-steps", "2")
    assert result.exit_code == 0, result.stderr
    metrics = result.json()["metrics"]
    assert set(metrics) >= {"pearson", "spearmanr", "mse", "loss"}
    assert set(result.json()["test_metrics"]) >= {"pearson", "spearmanr"}  # data.test scored after training
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"a": "a great film", "b": "a dull film"}) + "\n")
    predicted = run_cli("predict", str(tmp_path / "run"), "--input", str(pairs), "--json")
    assert isinstance(predicted.json()["predictions"][0]["prediction"], float)


def test_flags_override_recipe_and_parquet_input(tiny_models, tmp_path):
    import pandas as pd

    train = tmp_path / "train.parquet"
    pd.DataFrame(sentiment_rows(16)).to_parquet(train)
    recipe = write_recipe(tmp_path / "r.yaml", "does-not-matter", train, None, tmp_path / "unused",
                          data={"label_names": ["neg", "pos"]})
    out_dir = tmp_path / "flags"
    result = run_cli("finetune", str(recipe), "--model", str(tiny_models["bert"]), "--output-dir", str(out_dir),
                     "--max-steps", "1", "--seed", "7", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["train"]["steps"] == 1
    saved = (out_dir / "recipe.yaml").read_text()
    assert "seed: 7" in saved and "max_steps: 1" in saved
    predicted = run_cli("predict", str(out_dir), "--input", "-", input='{"text": "a great film"}\n')
    assert json.loads(predicted.stdout)["label"] in ("neg", "pos")
