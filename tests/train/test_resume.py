"""Resume: a run continued from a checkpoint ends with exactly the weights of an uninterrupted run
(CPU, fp32), mid-epoch, at an epoch boundary, with gradient accumulation and after SIGTERM."""

import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers import (REPO, assert_same_weights, cli_env, newest_complete_checkpoint, resumed_from, run_cli,  # noqa: F401
                     sentiment_rows, weights, write_csv, write_recipe)
from llmctl.errors import EXIT_INTERRUPTED


@pytest.fixture(scope="module")
def full_run(tiny_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    train = write_csv(tmp / "train.csv", sentiment_rows(40))
    # 5 batches per epoch, 2 per step -> 3 steps per epoch (the last one a single batch).
    recipe = write_recipe(tmp / "r.yaml", tiny_models["bert"], train, None, tmp / "full",
                          train={"epochs": 2, "gradient_accumulation_steps": 2, "save_every": 1,
                                 "keep_checkpoints": 10, "warmup_ratio": 0.2})
    result = run_cli("finetune", str(recipe), "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["train"]["steps"] == 6
    return tmp, recipe


@pytest.mark.parametrize("step", [2, 3, 4])  # mid-epoch, epoch boundary, mid second epoch
def test_resume_matches_uninterrupted(full_run, step):
    tmp, recipe = full_run
    resumed = tmp / f"resumed-{step}"
    shutil.copytree(tmp / "full", resumed)
    # Make it look like the process died just after checkpoint `step`.
    for ckpt in (resumed / "checkpoints").iterdir():
        if int(ckpt.name.split("-")[1]) > step:
            shutil.rmtree(ckpt)
    shutil.rmtree(resumed / "model")
    (resumed / "metrics.json").unlink()
    # ... and in the middle of writing the next one.
    (resumed / "checkpoints" / f"step-{step + 1:07d}.partial").mkdir()
    assert newest_complete_checkpoint(resumed) == resumed / "checkpoints" / f"step-{step:07d}"
    result = run_cli("finetune", str(recipe), "--output-dir", str(resumed), "--resume", "--json")
    assert result.exit_code == 0, result.stderr
    assert resumed_from(result.stderr) == resumed / "checkpoints" / f"step-{step:07d}"
    assert not (resumed / "checkpoints" / f"step-{step + 1:07d}.partial").exists()
    assert result.json()["train"]["steps"] == 6
    assert_same_weights(tmp / "full", resumed)


def test_corrupt_checkpoint_is_named(full_run):
    tmp, recipe = full_run
    broken = tmp / "broken"
    shutil.copytree(tmp / "full", broken)
    (broken / "metrics.json").unlink()
    last = sorted((broken / "checkpoints").iterdir())[-1]
    data = bytearray((last / "optimizer.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (last / "optimizer.safetensors").write_bytes(bytes(data))
    result = run_cli("finetune", str(recipe), "--output-dir", str(broken), "--resume")
    assert result.exit_code == 1
    assert f"Checkpoint file {last / 'optimizer.safetensors'} is missing or corrupt" in result.stderr


def test_sigterm_saves_and_resume_matches(tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(64))
    common = {"train": {"epochs": 3, "batch_size": 4, "save_every": 1000, "logging_steps": 1}}
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, None, tmp_path / "killed", **common)
    proc = subprocess.Popen([sys.executable, "-m", "llmctl", "finetune", str(recipe)], cwd=REPO,
                            stderr=subprocess.PIPE, text=True, env=cli_env())
    for line in proc.stderr:  # wait until training is really under way
        if line.startswith("step 3/"):
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == EXIT_INTERRUPTED, rest
    assert "Stopped by signal SIGTERM" in rest and "--resume" in rest
    # save_every is 1000: the only checkpoint is the one the signal made (after step 3 or later).
    saved = newest_complete_checkpoint(tmp_path / "killed")
    assert saved is not None and int(saved.name.split("-")[1]) >= 3, rest

    resumed = run_cli("finetune", str(recipe), "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    # Same seed, same bits: a resume that silently started over would still match the weights
    # below, so the checkpoint it continued from is checked too.
    assert resumed_from(resumed.stderr) == saved, resumed.stderr
    clean = run_cli("finetune", str(recipe), "--output-dir", str(tmp_path / "clean"))
    assert clean.exit_code == 0, clean.stderr
    assert_same_weights(tmp_path / "killed", tmp_path / "clean")


def test_resume_refuses_a_changed_recipe_unless_forced(full_run):
    tmp, recipe = full_run
    changed = tmp / "changed"
    shutil.copytree(tmp / "full", changed)
    (changed / "metrics.json").unlink()
    result = run_cli("finetune", str(recipe), "--output-dir", str(changed), "--resume",
                     "--set", "train.learning_rate=0.5", "--set", "train.logging_steps=3")
    assert result.exit_code == 2
    assert "train.learning_rate: 0.001 in the checkpoint, 0.5 now" in result.stderr
    assert "logging_steps" not in result.stderr  # harmless settings may change
    assert "--force-resume" in result.stderr
    forced = run_cli("finetune", str(recipe), "--output-dir", str(changed), "--force-resume",
                     "--set", "train.learning_rate=0.5")
    assert forced.exit_code == 0, forced.stderr


def test_resume_without_the_cpu_speedups_names_the_mismatch(full_run):
    """The checkpoint's AdamW moments cover only the embedding rows the data contains; the
    stock model wants the full table. One clear line instead of a shape error a step later."""
    from llmctl.errors import EXIT_RUNTIME

    tmp, recipe = full_run
    other = tmp / "no-speedups"
    shutil.copytree(tmp / "full", other)
    (other / "metrics.json").unlink()
    before = sorted(p.name for p in (other / "checkpoints").iterdir())
    result = run_cli("finetune", str(recipe), "--output-dir", str(other), "--resume",
                     env={"LLMCTL_CPU_SPEEDUPS": "0"})
    assert result.exit_code == EXIT_RUNTIME
    assert "optimizer state of shape" in result.stderr and "LLMCTL_CPU_SPEEDUPS" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in (other / "checkpoints").iterdir()) == before  # nothing lost
