"""Two gloo processes on CPU (torchrun / accelerate launch) reach the metrics of one process
with the same global batch, and --json reports num_processes."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, on_free_port, run_cli, sentiment_rows, write_csv, write_recipe

# Two-process jobs share one xdist worker, one at a time: two at once would crowd two cores. Each
# launch rendezvous on a port free at the time (helpers.on_free_port), not the default 29500.
pytestmark = pytest.mark.xdist_group("gloo-port")

LAUNCHERS = {
    "torchrun": ["-m", "torch.distributed.run", "--nproc_per_node", "2"],
    "accelerate": ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"],
}


@pytest.fixture(scope="module")
def setup(tiny_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multi")
    # Without dropout, one and two processes compute the same gradients up to summation order.
    model = tmp / "bert-nodropout"
    shutil.copytree(tiny_models["bert"], model)
    config = json.loads((model / "config.json").read_text())
    config |= {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    (model / "config.json").write_text(json.dumps(config))
    train = write_csv(tmp / "train.csv", sentiment_rows(44))  # 44 % 8 != 0: uneven last batch
    valid = write_csv(tmp / "valid.csv", sentiment_rows(13))  # odd: one process gets a repeat
    recipe = write_recipe(tmp / "r.yaml", model, train, valid, tmp / "single", train={"epochs": 2})
    single = run_cli("finetune", str(recipe), "--json")
    assert single.exit_code == 0, single.stderr
    return tmp, recipe, single.json()


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_two_processes_match_one(setup, launcher):
    tmp, recipe, single = setup
    out_dir = tmp / launcher
    cmd = [sys.executable, *on_free_port(LAUNCHERS[launcher]), "-m", "llmctl", "finetune", str(recipe),
           "--output-dir", str(out_dir), "--json"]
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    assert len(lines) == 1, proc.stdout  # only rank 0 prints the result
    multi = json.loads(lines[0])
    assert multi["train"]["num_processes"] == 2 and single["train"]["num_processes"] == 1
    assert multi["train"]["samples"] == single["train"]["samples"]
    assert multi["metrics"]["loss"] == pytest.approx(single["metrics"]["loss"], abs=1e-4)
    assert multi["metrics"]["accuracy"] == single["metrics"]["accuracy"]
    assert Path(out_dir / "model" / "model.safetensors").is_file()


def test_eval_under_two_processes_writes_every_prediction_once(setup):
    """Each rank scores part of the split; the predictions file holds every row, written by rank 0
    alone (another rank writing its empty share over it would leave the user an empty file)."""
    tmp, _, single = setup
    target = tmp / "predictions.jsonl"
    cmd = [sys.executable, *on_free_port(LAUNCHERS["accelerate"]), "-m", "llmctl", "eval", str(tmp / "single"),
           "--data", str(tmp / "valid.csv"), "--save-predictions", str(target), "--json"]
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads([l for l in proc.stdout.splitlines() if l.startswith("{")][-1])
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert result["samples"] == len(rows) == 13 and result["predictions_file"] == str(target)
    assert [r["reference"] for r in rows] == [str(row["label"]) for row in sentiment_rows(13)]  # label names
    assert sum(r["label"] == r["reference"] for r in rows) / 13 == pytest.approx(result["metrics"]["accuracy"])
