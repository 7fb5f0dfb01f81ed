"""Faults a run must survive or refuse cleanly: a full disk, no network, a second run on the
same directory, `--resume auto` on every kind of directory, pickle in a checkpoint, fp16
overflow steps; and the --deterministic flag."""

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys

import pytest

from helpers import REPO, error_lines, run_cli, sentiment_rows, write_csv, write_recipe
from llmctl.errors import EXIT_RUNTIME, EXIT_USAGE

TRAIN = {"epochs": 2, "batch_size": 4, "save_every": 5, "eval_every": 5, "keep_checkpoints": 10}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reliable")
    return tmp, write_csv(tmp / "train.csv", sentiment_rows(40)), write_csv(tmp / "valid.csv", sentiment_rows(12))


@pytest.fixture(scope="module")
def finished(files, tiny_models):
    """A finished 6-step run with a step-5 checkpoint, started with `--resume auto` (recipe last)
    on a directory that did not exist yet: that simply trains."""
    tmp = files[0] / "finished"
    tmp.mkdir()
    recipe = recipe_for(tmp, files, tiny_models, epochs=1, eval_every="epoch")
    result = run_cli("finetune", "--resume", "auto", str(recipe), "--max-steps", "6")
    assert result.exit_code == 0, result.stderr
    assert "resuming" not in result.stderr
    assert json.loads((tmp / "run" / "environment.json").read_text())["deterministic_algorithms"] is False
    return recipe, tmp / "run"


def copy_of(finished, tmp_path):
    """The finished run, copied and made to look killed after its step-5 checkpoint."""
    recipe, run = finished
    shutil.copytree(run, tmp_path / "run")
    (tmp_path / "run" / "metrics.json").unlink()
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step-0000006")  # the final step's checkpoint
    return str(recipe), "--output-dir", str(tmp_path / "run"), "--max-steps", "6"


def recipe_for(tmp_path, files, tiny_models, name="run", **train):
    _, train_file, valid_file = files
    return write_recipe(tmp_path / f"{name}.yaml", tiny_models["bert"], train_file, valid_file, tmp_path / name,
                        train=TRAIN | train)


def tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


# -- disk full ------------------------------------------------------------------------------
def test_disk_full_while_writing_a_checkpoint(tmp_path, files, tiny_models):
    recipe = recipe_for(tmp_path, files, tiny_models, epochs=1, save_every=2, eval_every=2)
    run = tmp_path / "run"
    result = run_cli("finetune", str(recipe), env={"LLMCTL_FAULT": "enospc@4:model.safetensors"})
    assert result.exit_code == EXIT_RUNTIME
    assert error_lines(result.stderr) == [
        f"error: Could not write checkpoint {run / 'checkpoints' / 'step-0000004'}: disk full "
        "(No space left on device). Free disk space (or raise train.save_every); earlier checkpoints and the "
        "best model are intact, and --resume continues from the latest complete checkpoint."]
    assert "Traceback" not in result.stderr
    # The previous checkpoint verifies, nothing half-written remains, the best model loads.
    from llmctl.train.checkpoint import verify_checkpoint

    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-0000002"]
    verify_checkpoint(run / "checkpoints" / "step-0000002")
    assert tensors(run / "model" / "model.safetensors")
    assert not (run / "model.partial").exists()
    # Space freed: the same command with --resume auto finishes from step 2.
    resumed = run_cli("finetune", str(recipe), "--resume", "auto", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert f"resuming from {run / 'checkpoints' / 'step-0000002'}" in resumed.stderr
    assert resumed.json()["train"]["steps"] == 10


def test_disk_full_while_saving_the_best_model(tmp_path, files, tiny_models):
    # metric_for_best loss: the step-5 and step-10 evaluations are both new bests.
    recipe = recipe_for(tmp_path, files, tiny_models, metric_for_best="loss")
    run = tmp_path / "run"
    result = run_cli("finetune", str(recipe), env={"LLMCTL_FAULT": "enospc@10:model/"})
    assert result.exit_code == EXIT_RUNTIME
    assert error_lines(result.stderr) == [
        f"error: Could not write the best model to {run / 'model'}: disk full (No space left on device). "
        "Free disk space; the previous best model and the checkpoints are intact, and --resume continues."]
    assert not (run / "model.partial").exists()
    saved = json.loads((run / "model" / "llmctl.json").read_text())["saved_at"]
    assert saved["step"] == 5
    # The best model on disk is still exactly the step-5 weights (as the step-5 checkpoint holds them).
    best, at_five = tensors(run / "model" / "model.safetensors"), tensors(run / "checkpoints" / "step-0000005" /
                                                                          "model.safetensors")
    assert best.keys() <= at_five.keys() and all((best[k] == at_five[k]).all() for k in best)


# -- no network -----------------------------------------------------------------------------
SITECUSTOMIZE = '''
import os, socket

_log = os.environ["BLOCKED_NETWORK_LOG"]


def _refuse(what):
    with open(_log, "a") as handle:
        handle.write(f"{what}\\n")
    raise OSError(101, f"network blocked by the test: {what}")


_connect = socket.socket.connect


def connect(self, address, *args):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse(f"connect {address}")
    return _connect(self, address, *args)


socket.socket.connect = connect
socket.socket.connect_ex = lambda self, address: connect(self, address) or 0
socket.getaddrinfo = lambda host, *args, **kwargs: _refuse(f"resolve {host}")
socket.create_connection = lambda address, *args, **kwargs: _refuse(f"connect {address}")
'''


def test_offline_with_the_network_blocked(tmp_path, files, tiny_models):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "network.log"
    env = {"PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{REPO}", "BLOCKED_NETWORK_LOG": str(log),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    probe = subprocess.run([sys.executable, "-c", "import socket; socket.create_connection(('example.com', 80))"],
                           env=os.environ | env, capture_output=True, text=True)
    assert "network blocked by the test" in probe.stderr  # the block is in force
    log.unlink()

    recipe = recipe_for(tmp_path, files, tiny_models, epochs=1, eval_every="epoch")
    trained = run_cli("finetune", str(recipe), "--max-steps", "2", "--json", env=env)
    assert trained.exit_code == 0, trained.stderr
    assert set(trained.json()["metrics"]) >= {"loss", "accuracy", "f1", "matthews_correlation"}
    evaluated = run_cli("eval", str(tmp_path / "run"), "--data", str(files[2]), "--json", env=env)
    assert evaluated.exit_code == 0, evaluated.stderr
    assert evaluated.json()["metrics"]["accuracy"] == trained.json()["metrics"]["accuracy"]
    predicted = run_cli("predict", str(tmp_path / "run"), "--input", str(files[2]), env=env)
    assert predicted.exit_code == 0, predicted.stderr
    assert len(predicted.stdout.splitlines()) == 12
    assert not log.exists(), log.read_text()  # not even an attempt to reach the network


# -- two runs, one directory ----------------------------------------------------------------
def test_second_run_on_a_busy_directory_is_refused(tmp_path, files, tiny_models):
    recipe = recipe_for(tmp_path, files, tiny_models)
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "llmctl", "finetune", str(recipe)], cwd=REPO,
                             env=os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "LLMCTL_FAULT": "pause@7"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in first.stderr:  # the first run holds the lock, mid-training, after a checkpoint
            if "llmctl-fault: paused" in line:
                break
        before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
        for flags in ([], ["--resume", "auto"], ["--overwrite"]):
            second = run_cli("finetune", str(recipe), *flags)
            assert second.exit_code == EXIT_USAGE, (flags, second.stderr)
            assert error_lines(second.stderr) == [
                f"error: Run directory {run} is in use by another llmctl process. "
                "Wait for it to finish or choose another --output-dir."], flags
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
        first.stderr.close()
    # kill -9 leaves no stale lock behind (the kernel drops it with the process).
    resumed = run_cli("finetune", str(recipe), "--resume", "auto")
    assert resumed.exit_code == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and "step-0000005" in resumed.stderr


# -- --resume auto ----------------------------------------------------------------------------
def test_resume_auto_refuses_finished_and_foreign_directories(tmp_path, finished):
    recipe, run = finished
    metrics = (run / "metrics.json").read_bytes()
    for flags in (["--resume"], ["--resume", "auto"]):
        again = run_cli("finetune", str(recipe), *flags)
        assert again.exit_code == EXIT_USAGE
        assert error_lines(again.stderr) == [f"error: Run {run} already finished (it has metrics.json). "
                                             "Use --overwrite to train it again, or --output-dir for a new run."]
    assert (run / "metrics.json").read_bytes() == metrics
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"\xff\xd8 not really")
    refused = run_cli("finetune", str(recipe), "--output-dir", str(foreign), "--resume", "auto")
    assert refused.exit_code == EXIT_USAGE
    assert error_lines(refused.stderr) == [f"error: --resume: {foreign} is not an llmctl run directory (no "
                                           "environment.json written by llmctl), so nothing in it is touched. "
                                           "Choose another --output-dir; llmctl only resumes runs it made."]
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]
    # `auto` is the only word allowed after the recipe.
    stray = run_cli("finetune", str(recipe), "auto")
    assert stray.exit_code == EXIT_USAGE and "Unexpected extra argument 'auto'" in stray.stderr


def test_resume_auto_after_a_kill_before_the_first_checkpoint(tmp_path, files, tiny_models):
    recipe = recipe_for(tmp_path, files, tiny_models, eval_every=1, epochs=1)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "llmctl", "finetune", str(recipe)], cwd=REPO,
                            env=os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "LLMCTL_FAULT": "pause@3"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "llmctl-fault: paused" in line:
            proc.kill()
            break
    proc.wait(timeout=60)
    proc.stderr.close()
    assert not list((run / "checkpoints").glob("step-*")) and (run / "metrics.jsonl").is_file()
    resumed = run_cli("finetune", str(recipe), "--resume", "auto", "--deterministic")
    assert resumed.exit_code == 0, resumed.stderr
    assert "resuming" not in resumed.stderr  # started fresh ...
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 11))  # ... and the killed run's evaluations were not kept twice
    # --deterministic is recorded in the recipe and turned torch's deterministic algorithms on.
    assert "deterministic: true" in (run / "recipe.yaml").read_text()
    assert json.loads((run / "environment.json").read_text())["deterministic_algorithms"] is True


def test_deterministic_flag_is_part_of_the_fingerprint(tmp_path, finished):
    changed = run_cli("finetune", *copy_of(finished, tmp_path), "--resume", "--deterministic")
    assert changed.exit_code == EXIT_USAGE
    assert "train.deterministic: False in the checkpoint, True now" in changed.stderr


# -- pickle in a checkpoint ------------------------------------------------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("victim", ["optimizer.safetensors", "rng-0.json", "rng-0.safetensors"])
def test_pickle_payload_in_a_checkpoint_never_runs(tmp_path, finished, victim):
    import hashlib

    args = copy_of(finished, tmp_path)
    run, marker = tmp_path / "run", tmp_path / "pwned"
    checkpoint = run / "checkpoints" / "step-0000005"
    # An attacker who can write the file can also fix up the manifest's checksums.
    (checkpoint / victim).write_bytes(pickle.dumps(_Payload(marker)))
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    manifest["files"][victim] = hashlib.sha256((checkpoint / victim).read_bytes()).hexdigest()
    (checkpoint / "manifest.json").write_text(json.dumps(manifest))
    result = run_cli("finetune", *args, "--resume")
    assert result.exit_code == EXIT_RUNTIME
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"error: Checkpoint file {checkpoint / victim} is not valid")
    assert "never pickle" in lines[0] and "unexpected" not in lines[0]
    assert not marker.exists()


# -- fp16 overflow ----------------------------------------------------------------------------
def test_overflow_steps_are_skipped_counted_and_hold_the_schedule(tmp_path, files, tiny_models, monkeypatch):
    """accelerate does not scale losses on CPU (`Accelerator(mixed_precision="fp16", cpu=True)`
    has no GradScaler), so this drives the real fp16 machinery by hand: a torch GradScaler on
    CPU, and an inf gradient at step 3, as an fp16 overflow would produce."""
    import accelerate
    import torch

    import llmctl.train.accelerator as setup
    from llmctl.tasks.recipe import load_recipe
    from llmctl.core.finetune import Finished, finetune
    from llmctl.events import Progress

    make_accelerator = setup.make_accelerator

    def with_scaler(precision, device=None, trackers=None):
        acc = make_accelerator(precision, device, trackers)
        acc.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1000)
        return acc

    backward, calls = accelerate.Accelerator.backward, []

    def overflowing_backward(self, loss, **kwargs):
        backward(self, loss, **kwargs)
        calls.append(loss)
        if len(calls) == 3:
            next(p for p in self._models[0].parameters() if p.grad is not None).grad.view(-1)[0] = float("inf")

    monkeypatch.setattr(setup, "make_accelerator", with_scaler)
    monkeypatch.setattr(accelerate.Accelerator, "backward", overflowing_backward)
    recipe = load_recipe(str(recipe_for(tmp_path, files, tiny_models, eval_every="epoch", save_every=2)),
                         ["train.max_steps=8", "data.validation=null"])
    events = list(finetune(recipe))
    learning_rates = [e.learning_rate for e in events if isinstance(e, Progress)]
    result = next(e for e in events if isinstance(e, Finished)).result
    assert result["train"]["skipped_steps"] == 1 and result["train"]["steps"] == 8
    # Step 3 left the schedule where it was; every other step moved it.
    assert learning_rates[2] == learning_rates[1]
    assert all(a != b for i, (a, b) in enumerate(zip(learning_rates, learning_rates[1:])) if i != 1)
    # ... and the weights: AdamW counted 2 updates by step 2 and 3 (not 4) by step 4.
    steps = {s: tensors(tmp_path / "run" / "checkpoints" / f"step-{s:07d}" / "optimizer.safetensors")["0.step"]
             for s in (2, 4)}
    assert float(steps[2]) == 2 and float(steps[4]) == 3


@pytest.mark.parametrize("read_first", [False, True])
def test_reader_closing_the_pipe_stops_quietly(tmp_path, finished, read_first):
    """`llmctl predict ... | head -1`: the reader goes away mid-output; llmctl stops with
    128 + SIGPIPE like shell tools, with no 'error: BrokenPipeError' line."""
    from llmctl.errors import EXIT_PIPE_CLOSED

    texts = tmp_path / "in.txt"
    texts.write_text("".join(f"review number {i} was fine\n" for i in range(3000)))
    proc = subprocess.Popen([sys.executable, "-m", "llmctl", "predict", str(finished[1]),
                             "--input", str(texts)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=os.environ | {"HF_HUB_OFFLINE": "1"})
    if read_first:
        assert "review number" in proc.stdout.readline().decode()  # one row arrived
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == EXIT_PIPE_CLOSED, stderr
    assert "BrokenPipe" not in stderr and "error:" not in stderr
