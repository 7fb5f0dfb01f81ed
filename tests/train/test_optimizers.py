"""Training options peers have (issue 27 item 18): the optimizer (AdamW fused or foreach,
Adafactor, SGD), transformers' schedules beyond linear/cosine/constant, and gradient
checkpointing; a run killed mid-way and resumed ends with the weights of an uninterrupted one."""

import json
import shutil

import pytest
import torch

from helpers import assert_same_weights, resumed_from, run_cli, sentiment_rows, weights, write_csv, write_recipe


def _lrs(run_dir):
    return [json.loads(line)["learning_rate"] for line in (run_dir / "train_log.jsonl").read_text().splitlines()
            if "learning_rate" in json.loads(line)]


def _train(tiny_models, tmp_path, name, steps=10, **train):
    train_file = write_csv(tmp_path / "train.csv", sentiment_rows(40))
    recipe = write_recipe(tmp_path / f"{name}.yaml", tiny_models["bert"], train_file, None, tmp_path / name,
                          train={"epochs": 2, "warmup_steps": 2, "learning_rate": 0.01, **train})
    result = run_cli("finetune", str(recipe), "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["train"]["steps"] == steps
    resolved = (tmp_path / name / "recipe.yaml").read_text()
    assert f"optimizer: {train['optimizer']}" in resolved and f"lr_scheduler: {train['lr_scheduler']}" in resolved
    return recipe, _lrs(tmp_path / name)  # logged after each step: the rate of the next one


def test_adafactor_with_restarts_resumes_exactly(tiny_models, tmp_path):
    recipe, lrs = _train(tiny_models, tmp_path, "full", optimizer="adafactor", lr_scheduler="cosine_with_restarts",
                         lr_cycles=2, save_every=4, keep_checkpoints=5)
    assert lrs[:2] == pytest.approx([0.005, 0.01])  # warm-up, then the schedule
    assert lrs[4] < 0.002 and lrs[5] == pytest.approx(0.01)  # two cosine cycles: back up at the second
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full", resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-0000008")
    shutil.rmtree(resumed / "checkpoints" / "step-0000010")
    shutil.rmtree(resumed / "model")
    (resumed / "metrics.json").unlink()
    again = run_cli("finetune", str(recipe), "--output-dir", str(resumed), "--resume", "--json")
    assert again.exit_code == 0, again.stderr
    assert resumed_from(again.stderr) == resumed / "checkpoints" / "step-0000004"
    assert_same_weights(tmp_path / "full", resumed)
    assert _lrs(resumed) == pytest.approx(lrs)


def test_sgd_polynomial_and_adamw_foreach_warmup_stable_decay(tiny_models, tmp_path):
    _, lrs = _train(tiny_models, tmp_path, "sgd", optimizer="sgd", sgd_momentum=0.9, lr_scheduler="polynomial",
                    lr_power=2.0)
    assert lrs[:3] == pytest.approx([0.005, 0.01, 0.01 * (7 / 8) ** 2])  # (1 - 1/8) ** 2 at step 3
    _, lrs = _train(tiny_models, tmp_path, "wsd", optimizer="adamw_foreach", lr_scheduler="warmup_stable_decay",
                    lr_decay_ratio=0.5)
    assert lrs[1:5] == pytest.approx([0.01] * 4) and lrs[8] < lrs[6] < 0.01  # stable, then the last half decays


def test_gradient_checkpointing_trains_the_same_model(tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(16))
    for on in (False, True):
        recipe = write_recipe(tmp_path / f"r{on}.yaml", tiny_models["gpt2"], train, None, tmp_path / f"run{on}",
                              train={"gradient_checkpointing": on})
        result = run_cli("finetune", str(recipe), "--json")
        assert result.exit_code == 0, result.stderr
    on, off = weights(tmp_path / "runTrue"), weights(tmp_path / "runFalse")
    assert on.keys() == off.keys()
    for key in on:
        assert torch.allclose(on[key], off[key], atol=1e-6), key


def test_unknown_optimizer_is_refused_with_the_choices(tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(8))
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, None, tmp_path / "out",
                          train={"optimizer": "lion"})
    result = run_cli("finetune", str(recipe), "--dry-run")
    assert result.exit_code == 2
    assert "train.optimizer" in result.stderr and "adafactor" in result.stderr
    assert not (tmp_path / "out").exists()
