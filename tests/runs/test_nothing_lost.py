"""Data-loss and silent-wrong-result paths, driven through the CLI on real files: each case
asserts the exit code, the one line the user reads, and that nothing on disk was lost."""

import json
import shutil
from pathlib import Path

import pytest

from helpers import error_lines, run_cli, sentiment_rows, write_csv, write_recipe
from llmctl.errors import EXIT_DATA, EXIT_GATE, EXIT_MODEL, EXIT_OK, EXIT_USAGE


def snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("lost")
    return root, write_csv(root / "train.csv", sentiment_rows(24)), write_csv(root / "valid.csv", sentiment_rows(8))


@pytest.fixture(scope="module")
def trained(data, tiny_models):
    """A finished fp32 run (3 steps), shared read-only by the eval / predict cases."""
    root, train, valid = data
    recipe = write_recipe(root / "fp32.yaml", tiny_models["bert"], train, valid, root / "fp32-run",
                          train={"epochs": 1, "batch_size": 8})
    result = run_cli("finetune", str(recipe), "--json")
    assert result.exit_code == EXIT_OK, result.stderr
    return recipe, root / "fp32-run", result.json()


def recipe_in(tmp_path, data, model, out, **extra):
    _, train, valid = data
    return write_recipe(tmp_path / "r.yaml", model, train, valid, out, **extra)


# -- 1. --overwrite removes only what llmctl made ------------------------------------------
def test_overwrite_refuses_a_directory_llmctl_did_not_make(tmp_path, data):
    home = tmp_path / "project"
    home.mkdir()
    shutil.copy(data[1], home / "train.csv")
    (home / "notes.txt").write_text("mine")
    before = snapshot(home)
    recipe = write_recipe(tmp_path / "r.yaml", "never-loaded", home / "train.csv", None, ".")
    result = run_cli("finetune", str(recipe), "--output-dir", ".", "--overwrite", cwd=home)
    assert result.exit_code == EXIT_USAGE
    assert error_lines(result.stderr) == [
        "error: --overwrite: . is not an llmctl run directory (no environment.json written by llmctl), so nothing "
        "in it is removed. Choose another --output-dir; llmctl only replaces runs it made."]
    assert snapshot(home) == before


def test_overwrite_never_deletes_the_model_or_data_it_is_about_to_use(tmp_path, trained, data):
    recipe, run, _ = trained
    copy = tmp_path / "x"
    shutil.copytree(run, copy)
    before = snapshot(copy)
    result = run_cli("finetune", str(recipe), "--model", str(copy / "model"), "--output-dir", str(copy), "--overwrite")
    assert result.exit_code == EXIT_USAGE
    assert error_lines(result.stderr) == [
        f"error: --overwrite would delete {copy / 'model'}, this run's model (model.name_or_path), which lives "
        f"inside {copy}. Copy it out of the run directory first, or choose another --output-dir."]
    shutil.copy(data[1], copy / "train.csv")
    inside = run_cli("finetune", str(recipe), "--set", f"data.train={copy / 'train.csv'}", "--output-dir", str(copy),
                     "--overwrite")
    assert inside.exit_code == EXIT_USAGE and "this run's data.train file" in inside.stderr
    assert {k: v for k, v in snapshot(copy).items() if k.name != "train.csv"} == before


def test_overwrite_checks_everything_first_and_keeps_files_it_did_not_write(tmp_path, trained):
    recipe, run, _ = trained
    copy = tmp_path / "x"
    shutil.copytree(run, copy)
    (copy / "my-notes.md").write_text("keep me")
    before = snapshot(copy)
    # A model that cannot be found fails after the directory checks: nothing may be gone yet.
    missing = run_cli("finetune", str(recipe), "--model", str(tmp_path / "nope"), "--output-dir", str(copy), "--overwrite")
    assert missing.exit_code == EXIT_MODEL, missing.stderr
    assert snapshot(copy) == before
    replaced = run_cli("finetune", str(recipe), "--output-dir", str(copy), "--overwrite", "--seed", "7")
    assert replaced.exit_code == EXIT_OK, replaced.stderr
    assert (copy / "my-notes.md").read_text() == "keep me"
    assert "seed: 7" in (copy / "recipe.yaml").read_text()
    assert (copy / "model" / "model.safetensors").read_bytes() != before[Path("model/model.safetensors")]


def test_output_dir_that_is_a_file_and_a_failed_start_leave_nothing(tmp_path, data, tiny_models):
    target = tmp_path / "results.txt"
    target.write_text("precious")
    as_file = run_cli("finetune", str(recipe_in(tmp_path, data, "never-loaded", target)))
    assert as_file.exit_code == EXIT_USAGE
    assert error_lines(as_file.stderr) == [f"error: Output directory {target} is a file, not a directory. "
                                           "Choose another --output-dir (or output_dir in the recipe)."]
    assert target.read_text() == "precious"
    # Weights that cannot be read fail when the model loads: the run directory must not exist
    # after it (so the corrected command needs no --overwrite).
    broken = tmp_path / "broken"
    shutil.copytree(tiny_models["bert"], broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    out = tmp_path / "run"
    failed = run_cli("finetune", str(recipe_in(tmp_path, data, broken, out)))
    assert failed.exit_code == EXIT_MODEL, failed.stderr
    assert not out.exists()
    # A directory left holding only run.lock (by an older llmctl) counts as empty.
    out.mkdir()
    (out / "run.lock").write_text("123")
    again = run_cli("finetune", str(recipe_in(tmp_path, data, tiny_models["bert"], out)), "--max-steps", "1")
    assert again.exit_code == EXIT_OK, again.stderr


# -- 2. a model without a trained head is refused ----------------------------------------
@pytest.mark.parametrize("command", ["eval", "predict"])
def test_random_head_is_refused(tmp_path, data, tiny_models, command):
    args = ["--data", str(data[2])] if command == "eval" else ["--input", str(data[2])]
    result = run_cli(command, str(tiny_models["bert"]), *args)
    assert result.exit_code == EXIT_MODEL
    model = tiny_models["bert"]
    assert error_lines(result.stderr) == [
        f"error: {model} has no trained weights for bert.pooler.dense.bias, bert.pooler.dense.weight, classifier.bias "
        "and 1 more: they would start at random, so every score and prediction would be noise. Fine-tune it first "
        f"(`llmctl finetune RECIPE --model {model}`), then eval the run directory; to score a generative model without "
        "training, use `llmctl eval MODEL --recipe` with a zero_shot section."]
    assert result.stdout == ""


# -- 3. devices that are not there --------------------------------------------------------
def test_unavailable_or_unknown_device_is_refused_by_every_command(tmp_path, data, trained):
    _, run, _ = trained
    recipe = recipe_in(tmp_path, data, "never-loaded", tmp_path / "run")
    cases = [("finetune", str(recipe), "--device", "cuda"), ("eval", str(run), "--device", "tpu"),
             ("predict", str(run), "--input", str(data[2]), "--device", "mps")]
    for args in cases:
        result = run_cli(*args)
        assert result.exit_code == EXIT_USAGE, (args, result.stderr)
        [line] = error_lines(result.stderr)
        name = args[-1]
        if name == "tpu":
            assert line.startswith("error: --device 'tpu' is not one of cpu, cuda, mps.")
        else:
            assert line.startswith(f"error: --device {name}: torch ") and f"sees no {name.upper()} device here" in line
            assert "(available: cpu)" in line
    assert not (tmp_path / "run").exists()


# -- 4. gates on lower-is-better metrics -------------------------------------------------
def test_fail_under_refuses_lower_is_better_and_fail_over_gates_them(trained):
    _, run, out = trained
    loss = out["metrics"]["loss"]
    refused = run_cli("eval", str(run), "--fail-under", "loss=0.1")
    assert refused.exit_code == EXIT_USAGE
    assert error_lines(refused.stderr) == ["error: --fail-under loss=0.1: loss is better when lower, so this gate "
                                           "would pass a worse model and fail a better one. Use --fail-over loss=0.1."]
    failed = run_cli("eval", str(run), "--fail-over", f"loss={loss / 2}", "--fail-under", "accuracy=0", "--json")
    assert failed.exit_code == EXIT_GATE
    gates = failed.json()["gates"]
    assert gates["passed"] is False and gates["ceilings"] == {"loss": loss / 2} and gates["thresholds"] == {"accuracy": 0}
    assert gates["failed"] == [f"loss {loss:.4f} > {loss / 2:g}"]
    passed = run_cli("eval", str(run), "--fail-over", f"loss={loss * 2}", "--json")
    assert passed.exit_code == EXIT_OK and passed.json()["gates"]["passed"] is True


def test_unknown_gate_metric_is_refused_before_the_model_loads(tmp_path, trained):
    _, run, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "model" / "model.safetensors").unlink()  # loading it would fail with exit 5
    result = run_cli("eval", str(copy), "--fail-over", "los=1")
    assert result.exit_code == EXIT_USAGE
    assert error_lines(result.stderr) == ["error: --fail-over los: no such metric; this evaluation reports loss, "
                                          "accuracy, f1, matthews_correlation. Did you mean 'loss'?"]


# -- 5. eval / predict use the run's precision ---------------------------------------------
def test_eval_uses_the_precision_the_run_trained_in(trained):
    _, run, out = trained
    same = run_cli("eval", str(run), "--json")
    assert same.exit_code == EXIT_OK, same.stderr
    assert same.json()["precision"] == "fp32"
    # fp32 again (training ran the CPU speed-ups, which sum in another order: 1e-10 apart) ...
    assert same.json()["metrics"]["loss"] == pytest.approx(out["metrics"]["loss"], rel=1e-8, abs=0)
    other = run_cli("eval", str(run), "--precision", "bf16", "--json")
    assert other.exit_code == EXIT_OK and other.json()["precision"] == "bf16"
    # ... while bf16, what `auto` gave before, rounds the logits a thousand times more coarsely.
    assert abs(other.json()["metrics"]["loss"] - out["metrics"]["loss"]) > 1e-6
    bad = run_cli("eval", str(run), "--precision", "fp64")
    assert bad.exit_code == EXIT_USAGE and error_lines(bad.stderr)[0].startswith("error: --precision 'fp64' is not one of")


# -- 6. checks that came too late ---------------------------------------------------------
def test_misspelled_metric_for_best_and_too_long_max_length_fail_before_training(tmp_path, data, tiny_models):
    out = tmp_path / "run"
    typo = run_cli("finetune", str(recipe_in(tmp_path, data, tiny_models["bert"], out, train={"metric_for_best": "acuracy"})))
    assert typo.exit_code == EXIT_USAGE
    assert error_lines(typo.stderr) == ["error: train.metric_for_best: 'acuracy' is not a metric of task classification; "
                                        "it reports loss, accuracy, f1, matthews_correlation. Did you mean 'accuracy'?"]
    long = run_cli("finetune", str(recipe_in(tmp_path, data, tiny_models["bert"], out)), "--set", "data.max_length=4096")
    assert long.exit_code == EXIT_USAGE
    assert error_lines(long.stderr) == [f"error: data.max_length 4096 is more than model {tiny_models['bert']} can take "
                                        "(256 positions). Set data.max_length to at most 256 (e.g. --set data.max_length=256)."]
    assert not out.exists()


def test_eval_and_predict_flags_are_checked_before_anything_loads(tmp_path, trained, data):
    _, run, _ = trained
    cases = {("eval", "--batch-size", "0"): "error: --batch-size must be at least 1 (got 0). Pass a positive --batch-size.",
             ("eval", "--max-samples", "0"): "error: --max-samples must be at least 1 (got 0). Pass a positive --max-samples.",
             ("predict", "--input", str(data[2]), "--batch-size", "-1"):
                 "error: --batch-size must be at least 1 (got -1). Pass a positive --batch-size.",
             ("predict", "--input", str(data[2]), "--output", str(tmp_path / "missing" / "dir" / "x.jsonl")):
                 f"error: --output {tmp_path / 'missing' / 'dir' / 'x.jsonl'}: directory {tmp_path / 'missing' / 'dir'} "
                 f"does not exist. Create it first (mkdir -p {tmp_path / 'missing' / 'dir'}) or choose another path."}
    for (command, *flags), message in cases.items():
        result = run_cli(command, str(run), *flags)
        assert result.exit_code == EXIT_USAGE, (flags, result.stderr)
        assert error_lines(result.stderr) == [message]
        assert "unexpected" not in result.stderr
    assert not (tmp_path / "missing").exists()


def test_eval_recipe_of_another_task_is_refused(tmp_path, trained):
    _, run, _ = trained
    ner = tmp_path / "ner.yaml"
    ner.write_text("task: ner\nmodel: {name_or_path: x}\ndata: {validation: v.conll}\n")
    result = run_cli("eval", str(run), "--recipe", str(ner))
    assert result.exit_code == EXIT_USAGE
    assert error_lines(result.stderr) == [f"error: --recipe {ner} is for task 'ner' but model {run / 'model'} was "
                                          "trained for 'classification'. Use a classification recipe or drop --recipe."]


# -- 7. quiet surprises -------------------------------------------------------------------
def test_predict_keeps_the_line_of_every_input_and_says_what_it_skipped(tmp_path, trained):
    _, run, _ = trained
    lines = tmp_path / "in.txt"
    lines.write_text("a great and moving film\n\n   \ntruly awful acting\n")
    result = run_cli("predict", str(run), "--input", str(lines))
    assert result.exit_code == EXIT_OK, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["line"], r["sentence"]) for r in rows] == [(1, "a great and moving film"), (4, "truly awful acting")]
    assert f'skipped 2 blank line(s) of {lines}; each prediction carries its input line number as "line".' in result.stderr


def test_the_last_step_is_checkpointed(trained):
    _, run, out = trained
    assert out["train"]["steps"] == 3
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-0000003"]
    loop = json.loads((run / "checkpoints" / "step-0000003" / "loop.json").read_text())
    assert loop["step"] == 3
