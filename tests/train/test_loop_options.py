"""Loop options through the CLI: step-wise evaluation, early stopping, determinism, hub-style data."""

import json

from helpers import run_cli, sentiment_rows, write_csv, write_recipe


def test_eval_every_steps_and_early_stopping(tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(48))
    valid = write_csv(tmp_path / "valid.csv", sentiment_rows(8))
    # A vanishing learning rate leaves accuracy unchanged, so no evaluation after the first improves.
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, valid, tmp_path / "run",
                          train={"epochs": 3, "eval_every": 2, "early_stopping_patience": 2,
                                 "learning_rate": 1e-12, "lr_scheduler": "cosine", "save_every": 1000})
    result = run_cli("finetune", str(recipe), "--json")
    assert result.exit_code == 0, result.stderr
    out = result.json()
    assert out["train"]["stopped"] == "early_stopping"
    assert out["train"]["steps"] == 6 and out["best_step"] == 2
    steps = [json.loads(l)["step"] for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]
    assert "early stopping at step 6" in result.stderr


def test_same_seed_same_metrics_and_weights(tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(24))
    valid = write_csv(tmp_path / "valid.csv", sentiment_rows(8))
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["gpt2"], train, valid, tmp_path / "a")
    first = run_cli("finetune", str(recipe), "--json")
    second = run_cli("finetune", str(recipe), "--json", "--output-dir", str(tmp_path / "b"))
    other = run_cli("finetune", str(recipe), "--json", "--output-dir", str(tmp_path / "c"), "--seed", "1")
    assert first.json()["metrics"] == second.json()["metrics"]
    weights = [(tmp_path / d / "model" / "model.safetensors").read_bytes() for d in "abc"]
    assert weights[0] == weights[1] and weights[0] != weights[2]


def test_hub_style_dataset_folder_with_classlabel(tiny_models, tmp_path):
    """data.dataset pointing at a folder goes through datasets.load_dataset, like a hub id;
    ClassLabel names become the model's label names."""
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    folder = tmp_path / "glue-like"
    folder.mkdir()
    for split, n in (("train", 24), ("validation", 8)):
        datasets.Dataset.from_list(sentiment_rows(n), features=features).to_parquet(str(folder / f"{split}.parquet"))
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], "train", "validation", tmp_path / "run",
                          data={"dataset": str(folder)})
    result = run_cli("finetune", str(recipe), "--json")
    assert result.exit_code == 0, result.stderr
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}


def test_env_command():
    result = run_cli("env", "--json")
    assert result.exit_code == 0, result.stderr
    info = result.json()
    assert info["packages"]["torch"] and "cpu_bf16" in info["devices"]
    # the extras' libraries too (issue 27 item 21), null when not installed
    from importlib.metadata import PackageNotFoundError, version

    for name in ("peft", "gguf", "onnx", "onnxruntime", "matplotlib"):
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        assert info["packages"][name] == installed, name
