"""The run directory against a hostile or careless user (issue 25, items 2, 3, 4, 9, 11, 19):
--resume adopts only what llmctl made, two starts on one directory, symlinks planted at run
files, a force-resumed run that keeps a finished run's record, validation / test data changed
under a checkpoint, and a torn last log line. Each case goes through the CLI on real files and
checks the exit code, the one line the user reads and that every file there before is intact."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ONE_THREAD, cli_env, error_lines, run_cli, sentiment_rows, write_csv, write_recipe
from llmctl.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE


def snapshot(root: Path) -> dict:
    """Every file (and link) under root: bytes for files, the target for links (never followed)."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_symlink():
            found[rel] = ("link", os.readlink(path))
        elif path.is_file():
            found[rel] = path.read_bytes()
    return found


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_models):
    """A finished 3-step run in `root/run`, its recipe `root/r.yaml` naming its data and output by
    relative paths, so a copy of `root` is the same run, recipe and all. Started with --resume on a
    directory that did not exist: that simply trains. Read only: tests work on copies."""
    root = tmp_path_factory.mktemp("trust-runs")
    write_csv(root / "train.csv", sentiment_rows(24))
    write_csv(root / "valid.csv", sentiment_rows(8))
    write_csv(root / "test.csv", sentiment_rows(6))
    write_recipe(root / "r.yaml", tiny_models["bert"], Path("train.csv"), Path("valid.csv"), Path("run"),
                 data={"test": "test.csv"})
    result = run_cli("finetune", "r.yaml", "--resume", cwd=root, env=ONE_THREAD)
    assert result.exit_code == EXIT_OK, result.stderr
    assert "resuming" not in result.stderr
    assert (root / "run" / "checkpoints" / "step-0000003" / "manifest.json").is_file()
    return root


def work_copy(finished: Path, tmp_path: Path, interrupted: bool = True) -> Path:
    """A copy of the finished run's folder; `interrupted`: as if killed after its last checkpoint."""
    work = tmp_path / "w"
    shutil.copytree(finished, work, symlinks=True)
    if interrupted:
        (work / "run" / "metrics.json").unlink()
    return work


# -- 2. --resume adopts only a directory llmctl made --------------------------------------------
def test_resume_never_adopts_a_folder_llmctl_did_not_make(finished, tmp_path):
    # Another tool's folder with llmctl's file names: checkpoints/step-*/, metrics.jsonl, recipe.yaml.
    foreign = tmp_path / "other-tool"
    (foreign / "checkpoints" / "step-0000100").mkdir(parents=True)
    (foreign / "checkpoints" / "step-0000100" / "weights.bin").write_bytes(b"\x00\x01 their weights")
    (foreign / "metrics.jsonl").write_text('{"step": 100, "loss": 0.5}\n{"step": 200, "loss": 0.4}\n')
    (foreign / "recipe.yaml").write_text("# my own notes, hand-written\nlr: 3\n")
    before = snapshot(foreign)
    result = run_cli("finetune", str(finished / "r.yaml"), "--output-dir", str(foreign), "--resume", cwd=finished)
    assert result.exit_code == EXIT_USAGE, result.stderr
    assert error_lines(result.stderr) == [
        f"error: --resume: {foreign} is not an llmctl run directory (no environment.json written by llmctl), so "
        "nothing in it is touched. Choose another --output-dir; llmctl only resumes runs it made."]
    assert snapshot(foreign) == before
    # `--output-dir .` in a folder holding a hand-written recipe.yaml, which is the recipe passed.
    home = tmp_path / "home"
    home.mkdir()
    for name in ("r.yaml", "train.csv", "valid.csv", "test.csv"):
        shutil.copy(finished / name, home / ("recipe.yaml" if name == "r.yaml" else name))
    before = snapshot(home)
    here = run_cli("finetune", "recipe.yaml", "--output-dir", ".", "--resume", cwd=home)
    assert here.exit_code == EXIT_USAGE, here.stderr
    assert error_lines(here.stderr) == [
        "error: --resume: . is not an llmctl run directory (no environment.json written by llmctl), so nothing in "
        "it is touched. Choose another --output-dir; llmctl only resumes runs it made."]
    assert snapshot(home) == before
    # An llmctl run, resumed with a recipe that lives inside it (the run rewrites recipe.yaml there).
    work = work_copy(finished, tmp_path)
    shutil.copy(work / "r.yaml", work / "run" / "recipe.yaml")  # the run's own file, used as the recipe
    before = snapshot(work)
    inside = run_cli("finetune", "run/recipe.yaml", "--resume", cwd=work)
    assert inside.exit_code == EXIT_USAGE, inside.stderr
    assert error_lines(inside.stderr) == [
        "error: --resume: the recipe run/recipe.yaml lives inside the run directory run, which the run rewrites. "
        "Copy the recipe out of the run directory and pass the copy."]
    assert snapshot(work) == before


# -- 3. two starts on one new directory ------------------------------------------------------------
def test_two_runs_started_on_one_new_directory(finished, tmp_path):
    """Two slow starts (a fresh one and a --resume) pass their checks while the directory does not
    exist, and pause just before taking it; a third run then trains there to the end. When the two
    go on, they find the directory changed: exit 2, and the finished run is intact, run.lock too."""
    work = work_copy(finished, tmp_path)
    shutil.rmtree(work / "run")
    go = tmp_path / "go"
    slow = []
    for flags in ([], ["--resume"]):
        env = cli_env(ONE_THREAD | {"LLMCTL_FAULT": "pause@0:run.lock", "LLMCTL_FAULT_UNTIL": str(go)})
        slow.append(subprocess.Popen([sys.executable, "-m", "llmctl", "finetune", "r.yaml", *flags], cwd=work,
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    try:
        for proc in slow:  # both have loaded everything and passed their checks
            for line in proc.stderr:
                if "llmctl-fault: paused" in line:
                    break
        assert not (work / "run").exists()
        fast = run_cli("finetune", "r.yaml", cwd=work, env=ONE_THREAD)
        assert fast.exit_code == EXIT_OK, fast.stderr
        before = snapshot(work / "run")
        go.touch()
        outcomes = [(proc.wait(timeout=120), proc.stderr.read()) for proc in slow]
    finally:
        for proc in slow:
            if proc.poll() is None:
                proc.kill()
            proc.stderr.close()
    for code, stderr in outcomes:
        assert code == EXIT_USAGE, stderr
        assert error_lines(stderr) == [
            "error: Run directory run changed while this run was starting (another llmctl run wrote to it); this "
            "run wrote nothing. Look at it with `llmctl runs show run`, then rerun with --resume, --overwrite or "
            "another --output-dir."]
    assert snapshot(work / "run") == before
    assert len(json.loads((work / "run" / "metrics.json").read_text())["metrics"]) > 0


# -- 4. never write through a symlink --------------------------------------------------------------
def test_symlinks_in_a_run_directory_are_never_written_through(finished, tmp_path):
    work = work_copy(finished, tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("recipe.yaml", "metrics.jsonl"):  # links where --resume used to rewrite the target
        (mine / name).write_text(f"my {name}, not llmctl's\n")
        (work / "run" / name).unlink()
        (work / "run" / name).symlink_to(mine / name)
    before, mine_before = snapshot(work), snapshot(mine)
    resumed = run_cli("finetune", "r.yaml", "--resume", cwd=work)
    assert resumed.exit_code == EXIT_USAGE, resumed.stderr
    assert error_lines(resumed.stderr) == [
        "error: --resume: run/metrics.jsonl is a symbolic link; llmctl never writes through a link in a run "
        "directory. Replace it with a copy of the file it points to (or remove it), then rerun."]
    assert snapshot(work) == before and snapshot(mine) == mine_before
    # run.lock linked to a user file (a start used to write its PID there): the link is replaced.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "run.lock").symlink_to(mine / "recipe.yaml")
    started = run_cli("finetune", "r.yaml", "--output-dir", str(fresh), "--max-steps", "1", cwd=work,
                      env=ONE_THREAD)
    assert started.exit_code == EXIT_OK, started.stderr
    assert not (fresh / "run.lock").is_symlink() and (fresh / "metrics.json").is_file()
    assert snapshot(mine) == mine_before


# -- 9. a run that trains again is no longer finished ------------------------------------------
def test_interrupted_force_resume_does_not_keep_the_finished_record(finished, tmp_path):
    work = work_copy(finished, tmp_path, interrupted=False)
    listed = run_cli("runs", "list", str(work), "--json")
    assert [r["status"] for r in listed.json()] == ["finished"]
    more = run_cli("finetune", "r.yaml", "--force-resume", "--max-steps", "6", cwd=work,
                   env=ONE_THREAD | {"LLMCTL_FAULT": "sigterm@4"})
    assert more.exit_code == EXIT_INTERRUPTED, more.stderr
    assert not (work / "run" / "metrics.json").exists()  # the 3-step result no longer describes model/
    listed = run_cli("runs", "list", str(work), "--json")
    assert listed.exit_code == EXIT_OK, listed.stderr
    assert [r["status"] for r in listed.json()] == ["interrupted"]
    again = run_cli("finetune", "r.yaml", "--force-resume", "--max-steps", "6", cwd=work, env=ONE_THREAD)
    assert again.exit_code == EXIT_OK, again.stderr
    assert json.loads((work / "run" / "metrics.json").read_text())["train"]["steps"] == 6


# -- 11. validation and test data are part of what a resume must match --------------------------
def test_resume_checks_validation_and_test_data_and_keeps_the_first_command(finished, tmp_path):
    work = work_copy(finished, tmp_path)
    write_csv(work / "valid.csv", sentiment_rows(8)[::-1])  # same path and size, other rows
    write_csv(work / "test.csv", sentiment_rows(5))
    before = snapshot(work)
    refused = run_cli("finetune", "r.yaml", "--resume", cwd=work)
    assert refused.exit_code == EXIT_USAGE, refused.stderr
    checkpoint = Path("run") / "checkpoints" / "step-0000003"
    assert error_lines(refused.stderr) == [
        f"error: Cannot resume from {checkpoint}: the run has changed since it was written:"]
    lines = [line.strip() for line in refused.stderr.splitlines()]
    assert "the validation data (tokenized) differs from the checkpoint's" in lines
    assert "the test data file differs from the checkpoint's" in lines
    assert snapshot(work) == before
    first = json.loads((work / "run" / "environment.json").read_text())["argv"]
    forced = run_cli("finetune", "r.yaml", "--force-resume", cwd=work, env=ONE_THREAD)
    assert forced.exit_code == EXIT_OK, forced.stderr
    assert (f"warning: --force-resume: continuing {checkpoint} though the validation data (tokenized) differs from "
            "the checkpoint's; the test data file differs from the checkpoint's.") in forced.stderr
    env = json.loads((work / "run" / "environment.json").read_text())
    assert env["first_argv"] == first and env["argv"][-2:] == ["r.yaml", "--force-resume"]


# -- 19. a torn last log line does not stop --resume ----------------------------------------------
def test_resume_drops_a_half_written_last_log_line(finished, tmp_path):
    work = work_copy(finished, tmp_path)
    logs = {name: (work / "run" / name).read_text() for name in ("metrics.jsonl", "train_log.jsonl")}
    for name, text in logs.items():
        (work / "run" / name).write_text(text + '{"step": 4, "los')  # killed mid-write
    resumed = run_cli("finetune", "r.yaml", "--resume", cwd=work, env=ONE_THREAD)
    assert resumed.exit_code == EXIT_OK, resumed.stderr
    assert "resuming from" in resumed.stderr
    for name, text in logs.items():
        kept = (work / "run" / name).read_text()
        assert kept.startswith(text) and all(json.loads(line) for line in kept.splitlines())
