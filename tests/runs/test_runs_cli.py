"""`llmctl runs list / show / compare` on real runs, the --max-drop regression gate, and --help
that reads the way people type."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from helpers import ONE_THREAD, REPO, error_lines, keyword_sentiment_rows, run_cli, write_csv, write_recipe
from llmctl.errors import EXIT_GATE, EXIT_USAGE
from test_fast_start import HEAVY, PROBE


@pytest.fixture(scope="module")
def runs(tiny_models, tmp_path_factory):
    """runs/base: a tiny BERT that learns the toy set (accuracy 1.0); runs/cand: the same recipe
    stopped after one step, worse on purpose. Both through the real CLI."""
    folder = tmp_path_factory.mktemp("runs_cli")
    # The separable toy set of test_classification_e2e: learnt for every seed tried.
    train = write_csv(folder / "train.csv", keyword_sentiment_rows(160, seed=0))
    valid = write_csv(folder / "valid.csv", keyword_sentiment_rows(64, seed=1))
    root = folder / "runs"
    recipe = write_recipe(folder / "r.yaml", tiny_models["bert"], train, valid, root / "base",
                          train={"epochs": 6, "batch_size": 16, "learning_rate": 5e-3, "logging_steps": 20})
    env = ONE_THREAD | {"LLMCTL_CACHE_DIR": str(folder / "cache")}
    for extra in ([], ["--output-dir", str(root / "cand"), "--max-steps", "1"]):
        done = run_cli("finetune", str(recipe), *extra, env=env)
        assert done.exit_code == 0, done.stderr
    # Beside them, folders `runs list` must skip: notes, and a start that failed (a lone run.lock).
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("not a run\n")
    (root / "failed-start").mkdir()
    (root / "failed-start" / "run.lock").write_text("123")
    return root


def metrics_json(run) -> dict:
    return json.loads((run / "metrics.json").read_text())["metrics"]


def lines_of(stdout: str) -> dict[str, str]:
    """First word -> the whole line, for the plain-text tables."""
    return {line.split()[0]: line for line in stdout.splitlines() if line.strip()}


# -- list ------------------------------------------------------------------------------------
def test_list_shows_each_run_and_skips_other_folders(runs):
    text = run_cli("runs", "list", str(runs))
    assert text.exit_code == 0, text.stderr
    rows = lines_of(text.stdout)
    assert set(rows) == {"run", "base", "cand"}
    assert "accuracy=1.0000" in rows["base"] and "finished" in rows["base"] and "classification" in rows["base"]
    assert "accuracy=0.5000" in rows["cand"] and "train.csv" in rows["cand"]

    listed = run_cli("runs", "list", str(runs), "--json").json()
    by_name = {r["name"]: r for r in listed}
    assert set(by_name) == {"base", "cand"}
    base = by_name["base"]
    assert base["task"] == "classification" and base["status"] == "finished"
    saved = json.loads((runs / "base" / "metrics.json").read_text())
    assert base["best"] == {"name": "accuracy", "value": saved["metrics"]["accuracy"], "step": saved["best_step"]}
    assert base["data"].endswith("train.csv") and base["started"] and base["finished"]


def test_list_of_an_empty_or_missing_folder(tmp_path):
    empty = run_cli("runs", "list", str(tmp_path))
    assert empty.exit_code == 0 and empty.stdout == ""
    assert f"no llmctl runs in {tmp_path}" in empty.stderr
    assert run_cli("runs", "list", str(tmp_path), "--json").json() == []

    missing = run_cli("runs", "list", str(tmp_path / "nowhere"))
    assert missing.exit_code == EXIT_USAGE
    assert error_lines(missing.stderr) == [f"error: {tmp_path / 'nowhere'}: no such directory. "
                                           "Pass the folder your runs are in (default: runs/)."]


# -- show ------------------------------------------------------------------------------------
def test_show_one_run_in_detail(runs):
    base = runs / "base"
    text = run_cli("runs", "show", str(base))
    assert text.exit_code == 0, text.stderr
    out = text.stdout
    assert out.startswith(f"run: {base}\nstatus: finished\n")
    assert f"command: llmctl finetune {runs.parent / 'r.yaml'}" in out
    assert re.search(r"^  train\.learning_rate +0\.005$", out, flags=re.M)
    assert re.search(r"^  accuracy +1\.0000$", out, flags=re.M)
    evaluations = [json.loads(line) for line in (base / "metrics.jsonl").read_text().splitlines()]
    steps = re.findall(r"^  (\d+) +\d\.\d\d ", out.split("evaluations\n")[1], flags=re.M)
    assert [int(s) for s in steps] == [e["step"] for e in evaluations]
    assert f"model: {base / 'model'} (full model, " in out
    assert re.search(r"^  step-0000060 +complete ", out, flags=re.M)

    detail = run_cli("runs", "show", str(base), "--json").json()
    assert detail["status"] == "finished" and detail["evaluations"] == evaluations
    assert detail["final"]["metrics"] == metrics_json(base)
    assert detail["recipe"]["train"]["learning_rate"] == 0.005
    assert detail["environment"]["packages"]["llmctl"]
    assert detail["model_dir"]["kind"] == "full"
    assert [c["name"] for c in detail["checkpoints"]] == ["step-0000050", "step-0000060"]


# -- compare ---------------------------------------------------------------------------------
def test_compare_side_by_side(runs):
    base, cand = metrics_json(runs / "base"), metrics_json(runs / "cand")
    text = run_cli("runs", "compare", str(runs / "base"), str(runs / "cand"))
    assert text.exit_code == 0, text.stderr
    out = text.stdout
    assert re.search(r"^  train\.max_steps +null -> 1$", out, flags=re.M)
    assert re.search(r"^  train +same \(by sha256 of the tokenized features\) ", out, flags=re.M)
    assert re.search(r"^  validation +same \(by path only\) ", out, flags=re.M)
    assert "library versions (base -> candidate)\n  same\n" in out
    delta = cand["accuracy"] - base["accuracy"]
    assert re.search(rf"^  accuracy +1\.0000 +0\.5000 +{delta:+.4f} +worse$", out, flags=re.M)
    assert re.search(r"^  loss .* \+\d\.\d{4} +worse$", out, flags=re.M)
    assert "gate:" not in out

    result = run_cli("runs", "compare", str(runs / "base"), str(runs / "cand"), "--json").json()
    assert result["base"]["path"] == str(runs / "base") and result["candidate"]["status"] == "finished"
    assert result["differences"]["recipe"] == {"train.max_steps": {"base": None, "candidate": 1}}
    assert result["differences"]["data"]["train"]["same"] is True
    assert result["differences"]["versions"] == {}
    assert set(result["metrics"]) == set(base)
    assert result["metrics"]["accuracy"] == {"base": base["accuracy"], "candidate": cand["accuracy"],
                                             "delta": pytest.approx(delta), "lower_is_better": False}
    assert result["metrics"]["loss"]["lower_is_better"] is True
    assert result["gate"] == {"passed": True, "max_drop": {}, "failed": []}


def test_gate_passes_within_the_allowed_drop_and_fails_beyond_it(runs):
    base, cand = str(runs / "base"), str(runs / "cand")
    within = run_cli("runs", "compare", base, cand, "--max-drop", "accuracy=0.6", "--json")
    assert within.exit_code == 0, within.stderr
    assert within.json()["gate"] == {"passed": True, "max_drop": {"accuracy": 0.6}, "failed": []}

    beyond = run_cli("runs", "compare", base, cand, "--max-drop", "accuracy=0.1", "--max-drop", "loss=0.01")
    assert beyond.exit_code == EXIT_GATE
    assert "gate: FAILED: accuracy fell 0.5 (1.0000 -> 0.5000; allowed 0.1); loss rose" in beyond.stdout
    [line] = error_lines(beyond.stderr)
    assert line.startswith(f"error: Regression gate failed ({cand} against {base}): accuracy fell 0.5 ")

    as_json = run_cli("runs", "compare", base, cand, "--max-drop", "f1=0", "--json")
    assert as_json.exit_code == EXIT_GATE
    assert as_json.json()["gate"]["passed"] is False and as_json.json()["gate"]["failed"][0].startswith("f1 fell")

    # The other way round the candidate is better on every metric: no drop to refuse.
    improved = run_cli("runs", "compare", cand, base, "--max-drop", "accuracy=0", "--max-drop", "loss=0")
    assert improved.exit_code == 0, improved.stderr
    assert "gate: passed" in improved.stdout


@pytest.mark.parametrize("given", ["accuracy", "accuracy=abc", "=0.1", "accuracy=inf"])
def test_malformed_max_drop(runs, given):
    result = run_cli("runs", "compare", str(runs / "base"), str(runs / "cand"), "--max-drop", given)
    assert result.exit_code == EXIT_USAGE
    assert error_lines(result.stderr) == [f"error: --max-drop '{given}' is not METRIC=VALUE with a finite number. "
                                          "Example: --max-drop f1=0.005"]


def test_negative_max_drop_and_a_metric_the_runs_lack(runs):
    negative = run_cli("runs", "compare", str(runs / "base"), str(runs / "cand"), "--max-drop", "f1=-0.1")
    assert negative.exit_code == EXIT_USAGE
    assert "the allowed drop cannot be negative" in error_lines(negative.stderr)[0]

    lacking = run_cli("runs", "compare", str(runs / "base"), str(runs / "cand"), "--max-drop", "rougeL=0.01")
    assert lacking.exit_code == EXIT_USAGE
    assert error_lines(lacking.stderr) == [
        "error: --max-drop rougeL: no final metric 'rougeL' in the base and the candidate; both runs have "
        "loss, accuracy, f1, matthews_correlation. Gate on one of those names."]


def test_compare_refuses_other_tasks_and_non_runs(runs, tmp_path):
    # A copy of the base run whose recipe and model say it trained another task.
    other = shutil.copytree(runs / "base", tmp_path / "ner-run")
    recipe = yaml.safe_load((other / "recipe.yaml").read_text())
    (other / "recipe.yaml").write_text(yaml.safe_dump(recipe | {"task": "ner"}))
    refused = run_cli("runs", "compare", str(runs / "base"), str(other))
    assert refused.exit_code == EXIT_USAGE
    assert error_lines(refused.stderr) == [f"error: Cannot compare runs of different tasks: {runs / 'base'} is "
                                           f"classification, {other} is ner. Compare two runs of the same task."]

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x\n")
    for path, says in ((tmp_path / "notes", "is not an llmctl run directory"),
                       (tmp_path / "nowhere", "no such run directory")):
        result = run_cli("runs", "compare", str(runs / "base"), str(path))
        assert result.exit_code == EXIT_USAGE
        [line] = error_lines(result.stderr)
        assert line.startswith(f"error: {path}") and says in line
        assert run_cli("runs", "show", str(path)).exit_code == EXIT_USAGE


# -- runs being written, and runs that stopped -----------------------------------------------
def test_a_running_run_is_read_but_not_gated(runs, tmp_path):
    live = shutil.copytree(runs / "cand", tmp_path / "runs" / "live")
    with open(live / "run.lock", "w") as lock:
        lock.write(str(os.getpid()))
        lock.flush()
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a training process holds it

        [row] = run_cli("runs", "list", str(live.parent), "--json").json()
        assert row["status"] == "running" and row["pid"] == os.getpid()
        assert f"running (pid {os.getpid()})" in run_cli("runs", "list", str(live.parent)).stdout
        shown = run_cli("runs", "show", str(live))
        assert shown.stdout.startswith(f"run: {live}\nstatus: running (pid {os.getpid()})\n")
        assert "final metrics" not in shown.stdout and "evaluations" in shown.stdout

        compared = run_cli("runs", "compare", str(runs / "base"), str(live))
        assert compared.exit_code == 0, compared.stderr
        assert "final metrics" not in compared.stdout and "recipe differences" in compared.stdout
        assert f"warning: {live} is still running (run.lock held by pid {os.getpid()}): no final metrics yet; " \
               "final metrics not compared" in compared.stderr

        gated = run_cli("runs", "compare", str(runs / "base"), str(live), "--max-drop", "f1=0.01")
        assert gated.exit_code == EXIT_USAGE
        assert f"--max-drop needs the final metrics of both runs, and {live} is still running" \
               in error_lines(gated.stderr)[0]
    # The lock released (its process gone), the same directory reads as finished again.
    assert run_cli("runs", "list", str(live.parent), "--json").json()[0]["status"] == "finished"


def test_an_interrupted_run(runs, tmp_path):
    stopped = shutil.copytree(runs / "base", tmp_path / "runs" / "stopped")
    (stopped / "metrics.json").unlink()
    evaluations = [json.loads(line) for line in (stopped / "metrics.jsonl").read_text().splitlines()]

    [row] = run_cli("runs", "list", str(stopped.parent), "--json").json()
    top = max(evaluations, key=lambda e: e["accuracy"])
    assert row["status"] == "interrupted" and row["finished"] is None
    assert row["best"] == {"name": "accuracy", "value": top["accuracy"], "step": top["step"]}
    assert run_cli("runs", "show", str(stopped)).stdout.startswith(f"run: {stopped}\nstatus: interrupted\n")

    gated = run_cli("runs", "compare", str(stopped), str(runs / "cand"), "--max-drop", "f1=0.01")
    assert gated.exit_code == EXIT_USAGE
    assert f"{stopped} is interrupted: no metrics.json" in error_lines(gated.stderr)[0]


def test_runs_commands_import_no_torch(runs):
    for args in (["runs", "list", str(runs)], ["runs", "compare", str(runs / "base"), str(runs / "cand")]):
        out = subprocess.run([sys.executable, "-c", PROBE.format(args=args, heavy=HEAVY)], capture_output=True,
                             text=True, cwd=REPO, check=True).stdout
        assert out.strip().splitlines()[-1] == "HEAVY:", out


# -- help and summaries that read right ------------------------------------------------------
def every_command() -> list[list[str]]:
    import typer.main

    from llmctl.cli import app

    found, todo = [], [([], typer.main.get_command(app))]
    while todo:
        path, command = todo.pop()
        found.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            todo.append((path + [name], sub))
    return sorted(found)


def test_every_help_names_its_values():
    helps = {}
    for path in every_command():
        result = run_cli(*path, "--help")
        assert result.exit_code == 0, (path, result.stderr)
        usage = result.stdout.splitlines()[0]
        assert not re.search(r"\{\w+\}", usage), (path, usage)  # typer's `{recipe}` placeholder
        for placeholder in ("<str>", "<int>", "<float>", "<list[", "<bool>"):
            assert placeholder not in result.stdout, (path, placeholder, result.stdout)
        helps[" ".join(path)] = result.stdout
    assert {"finetune", "eval", "runs list", "runs show", "runs compare"} <= set(helps)
    assert helps["finetune"].splitlines()[0].endswith(" finetune [OPTIONS] RECIPE")
    for expected in ("--set KEY=VALUE", "--output-dir DIR", "--max-steps N"):
        assert expected in helps["finetune"]
    assert "--fail-under METRIC=VALUE" in helps["eval"] and " eval [OPTIONS] MODEL_OR_RUN_DIR" in helps["eval"]
    assert helps["runs compare"].splitlines()[0].endswith(" runs compare [OPTIONS] BASE CANDIDATE")
    assert "--max-drop METRIC=AMOUNT" in helps["runs compare"]
    assert helps["runs list"].splitlines()[0].endswith(" runs list [OPTIONS] [DIR]")


def test_zero_shot_eval_summary_names_the_model(tiny_models, tmp_path):
    valid = write_csv(tmp_path / "valid.csv", [{"sentence": "a great film", "label": "positive"},
                                               {"sentence": "a dull film", "label": "negative"}])
    recipe = tmp_path / "zs.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "classification", "model": {"name_or_path": str(tiny_models["gpt2"])},
        "data": {"validation": str(valid)},
        "zero_shot": {"template": "Review: {sentence}\nSentiment:",
                      "verbalizers": {"negative": " awful", "positive": " great"}}}))
    result = run_cli("eval", str(tiny_models["gpt2"]), "--recipe", str(recipe), env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    assert "output_dir" not in result.stdout
    assert result.stdout.splitlines()[-1] == f"model: {tiny_models['gpt2']}"
