"""Issue 25, items 15, 16 and 20: chat templates rendered within a budget, predict inputs cut
while they are read, and the exit codes the README's table promises, each driven through the
real CLI on real files: the exit code, the one `error:` line, no traceback, no temp file left,
and every file that was there before byte-identical after."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmctl.tasks import TASKS

from helpers import (ONE_THREAD, REPO, Result, cli_env, error_lines, run_cli, sentiment_rows, write_csv,
                     write_recipe)

CHAT_HANG = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


def snapshot(*roots: Path) -> dict[Path, bytes]:
    """Every regular file under the roots, with its bytes."""
    return {p: p.read_bytes() for root in roots for p in sorted(Path(root).rglob("*"))
            if p.is_file() and not p.is_symlink()}


def assert_refused(result, code: int, line: str, before: dict[Path, bytes]) -> None:
    """Exit `code`, exactly one error line `line`, no traceback, and the files of `before`
    untouched, with no temp file beside them."""
    assert result.exit_code == code, (result.exit_code, result.stderr[-2000:])
    assert error_lines(result.stderr) == [line], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for path, data in before.items():
        assert path.read_bytes() == data, f"{path} changed"
    roots = {p.parent for p in before}
    leftovers = [p for root in roots for p in root.iterdir() if ".tmp" in p.name or p.name.endswith(".partial")]
    assert not leftovers, leftovers


def hanging_chat_model(tiny_models, dest: Path) -> Path:
    """The tiny llama with a chat template of two nested range(100000) loops (10^10 steps, hours)."""
    shutil.copytree(tiny_models["llama"], dest)
    (dest / "chat_template.jinja").write_text(CHAT_HANG + "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    return dest


def chat_budget_line(model: Path) -> str:
    return (f"error: the chat template of '{model}' ran past 10 seconds rendering one conversation "
            "(a loop without end, or far too long); llmctl stopped it. Fix the template (chat_template.jinja or "
            "tokenizer_config.json's chat_template) or use another model.")


# -- item 15: chat templates rendered within a budget ----------------------------------------
def test_generate_chat_refuses_a_template_that_runs_forever(tiny_models, tmp_path):
    model = hanging_chat_model(tiny_models, tmp_path / "hang")
    before = snapshot(model)
    result = run_cli("generate", str(model), "--chat", "hello", timeout=300)
    assert_refused(result, 5, chat_budget_line(model), before)


def test_chat_fine_tuning_data_refuses_a_template_that_runs_forever(tiny_models, tmp_path):
    model = hanging_chat_model(tiny_models, tmp_path / "hang")
    train = tmp_path / "chat.jsonl"
    train.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": "hello"}]}) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"task": "causal-lm", "model": {"name_or_path": str(model)},
                                      "data": {"train": str(train), "validation": None, "max_length": 32},
                                      "train": {"max_steps": 1, "batch_size": 1, "precision": "fp32"},
                                      "output_dir": str(tmp_path / "run")}))
    before = snapshot(model, tmp_path)
    result = run_cli("finetune", str(recipe), env=ONE_THREAD | {"LLMCTL_CACHE_DIR": str(tmp_path / "cache")},
                     timeout=300)
    assert_refused(result, 5, chat_budget_line(model), before)


# -- a trained classifier shared by the tests that only read it --------------------------------
@pytest.fixture(scope="module")
def run_dir(tiny_models, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("run")
    train = write_csv(tmp / "train.csv", sentiment_rows(16))
    recipe = write_recipe(tmp / "r.yaml", tiny_models["bert"], train, None, tmp / "run")
    result = run_cli("finetune", str(recipe), env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    return tmp / "run"


# -- item 16: predict cuts an input to what max_length tokens can use, before tokenizing --------
def test_predict_cuts_a_huge_line_before_tokenizing_it(run_dir, tmp_path):
    words = "great awful film plot acting the a was".split()
    long = " ".join(words[i * 7 % 8] for i in range(200_000))  # about 1 MB on one line
    inputs = tmp_path / "in.txt"
    inputs.write_text(f"{long}\n{long[:2000]}\n")
    before = snapshot(tmp_path)
    result = run_cli("predict", str(run_dir), "--input", str(inputs), env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    # max_length 32 x 100 characters a token can cover (an unknown word) x 2 = 6,400.
    assert (f"cut 1 input(s) of {inputs} to their first 6,400 characters, more than the model's max_length "
            "tokens can use (predictions echo the text as cut).") in result.stderr.splitlines()
    cut, short = [json.loads(line) for line in result.stdout.splitlines()]
    assert cut["sentence"] == long[:6400] and cut["line"] == 1
    # The model read the same first 32 tokens of both: the same prediction.
    assert (cut["label"], cut["scores"]) == (short["label"], short["scores"])
    assert snapshot(tmp_path) == before


# -- item 20: the exit codes of the README's table ------------------------------------------
def run_with_stdin(args: list[str], stdin: Path):
    """The CLI with a file's raw bytes on stdin (run_cli sends text)."""
    with open(stdin, "rb") as handle:
        proc = subprocess.run([sys.executable, "-m", "llmctl", *args], cwd=REPO, env=cli_env(ONE_THREAD),
                              stdin=handle, capture_output=True, timeout=600)
    return Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))


@pytest.mark.parametrize("command", ["predict", "generate"])
def test_binary_stdin_is_a_data_error(command, run_dir, tiny_models, tmp_path):
    binary = tmp_path / "binary.bin"
    binary.write_bytes(b"\xff\xfe\x00\x01binary\x80\n")
    before = snapshot(tmp_path)
    args = ["predict", str(run_dir), "--input", "-"] if command == "predict" else ["generate", str(tiny_models["gpt2"])]
    key = "--input" if command == "predict" else "prompts"
    assert_refused(run_with_stdin(args, binary), 3,
                   f"error: {key}: <stdin> is not UTF-8 text (invalid start byte at byte 0). Save the file as UTF-8.",
                   before)


@pytest.mark.parametrize("case", ["task list", "recursive anchor"])
def test_recipe_shape_errors_are_usage_errors(case, tiny_models, tmp_path):
    recipe = tmp_path / "r.yaml"
    if case == "task list":
        recipe.write_text(f"task: [classification, ner]\nmodel: {{name_or_path: {tiny_models['bert']}}}\n")
        line = (f"error: {recipe}:1: task: ['classification', 'ner'] is a list; a recipe trains one task, one of: "
                f"{', '.join(TASKS)}.")
    else:
        recipe.write_text("task: classification\ndata: &a {train: x.csv, again: *a}\n")
        line = (f"error: {recipe}: refusing this YAML: the anchored value at line 2 holds an alias of itself, a value "
                "without end. Write the value out instead of the alias.")
    before = snapshot(tmp_path)
    assert_refused(run_cli("finetune", str(recipe), "--output-dir", str(tmp_path / "run")), 2, line, before)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("fmt", ["safetensors", "onnx"])
def test_export_on_a_full_disk_is_a_runtime_error(fmt, run_dir, tmp_path):
    if fmt == "onnx":
        pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    before = snapshot(run_dir, tmp_path)
    out = tmp_path / "export"
    result = run_cli("export", str(run_dir), "--output", str(out), "--format", fmt, env={"LLMCTL_FAULT": "full@0:export/"})
    assert_refused(result, 1, f"error: Could not write {out}: disk full; nothing of the export was kept. "
                              "Free disk space, or choose an --output on another disk.", before)
    assert list(tmp_path.iterdir()) == []  # neither the export nor its .export.partial folder


def test_export_output_a_symlink_to_an_empty_folder(run_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    before = snapshot(run_dir)
    result = run_cli("export", str(run_dir), "--output", str(tmp_path / "link"))
    assert_refused(result, 2, f"error: --output {tmp_path / 'link'} is a symlink (to {tmp_path / 'empty'}); export "
                              "writes a new directory and never writes through a link. Give the folder itself "
                              f"(--output {tmp_path / 'empty'}) or a new path.", before)
    assert list((tmp_path / "empty").iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["empty", "link"]


def test_output_dir_a_dangling_symlink_is_refused_before_anything_loads(tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(8))
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, None, tmp_path / "unused")
    (tmp_path / "out").symlink_to(tmp_path / "nowhere")
    before = snapshot(tmp_path)
    result = run_cli("finetune", str(recipe), "--output-dir", str(tmp_path / "out"))
    assert_refused(result, 2, f"error: Output directory {tmp_path / 'out'} is a symlink to {tmp_path / 'nowhere'}, which "
                              "does not exist. Create the folder it points to, or choose another --output-dir.", before)
    assert result.stderr.splitlines() == error_lines(result.stderr)  # nothing tokenized or loaded first
    assert not (tmp_path / "nowhere").exists()


def test_report_output_an_existing_directory(run_dir, tmp_path):
    (tmp_path / "pages").mkdir()
    before = snapshot(run_dir, tmp_path)
    result = run_cli("report", str(run_dir), "--output", str(tmp_path / "pages"), "--max-examples", "0", cwd=tmp_path)
    assert_refused(result, 2, f"error: --output {tmp_path / 'pages'} is a directory. Give a file name, e.g. "
                              f"--output {tmp_path / 'pages' / 'report.html'}.", before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pages"]


def test_report_on_a_full_disk_leaves_no_temp_file(run_dir, tmp_path):
    before = snapshot(run_dir, tmp_path)
    page = tmp_path / "report.html"
    result = run_cli("report", str(run_dir), "--output", str(page), "--max-examples", "0",
                     env={"LLMCTL_FAULT": "full@0:report"})
    assert_refused(result, 1, f"error: Could not write the report {page}: disk full; nothing was written. "
                              "Free disk space, or write it elsewhere with --output.", before)
    assert list(tmp_path.iterdir()) == []


def test_predict_output_with_a_quoted_tilde_writes_to_home(run_dir, tmp_path):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir(), work.mkdir()
    inputs = work / "in.txt"
    inputs.write_text("a great film\n")
    result = run_cli("predict", str(run_dir), "--input", str(inputs), "--output", "~/x.jsonl", cwd=work,
                     env={"HOME": str(home)})
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["line"] for line in (home / "x.jsonl").read_text().splitlines()] == [1]
    assert sorted(p.name for p in work.iterdir()) == ["in.txt"]  # no folder named "~"
    assert sorted(p.name for p in home.iterdir()) == ["x.jsonl"]


@pytest.mark.parametrize("command", ["predict", "generate", "eval"])
def test_sigterm_is_exit_130_with_one_line(command, run_dir, tiny_models, tmp_path):
    inputs = tmp_path / "in.txt"
    inputs.write_text("a great film\n")
    args = {"predict": ["predict", str(run_dir), "--input", str(inputs)],
            "generate": ["generate", str(tiny_models["gpt2"]), "hello"],
            "eval": ["eval", str(run_dir), "--data", str(inputs)]}[command]
    before = snapshot(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "llmctl", *args], env=cli_env({"LLMCTL_FAULT": f"pause@0:{command}"}),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        paused = proc.stderr.readline()  # the fault seam says when the command is running
        assert paused.startswith(f"llmctl-fault: paused at the start of {command}"), paused
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert_refused(Result(proc.returncode, out, err), 130, "error: interrupted by SIGTERM.", before)
    assert out == ""


def test_feature_cache_write_on_a_full_disk_is_exit_1(tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(16))
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, None, tmp_path / "run")
    cache = tmp_path / "cache"
    before = snapshot(tmp_path)
    result = run_cli("finetune", str(recipe), env=ONE_THREAD | {"LLMCTL_CACHE_DIR": str(cache),
                                                                "LLMCTL_FAULT": "full@0:cache/"})
    assert_refused(result, 1, f"error: Could not write the feature cache entry in {cache / 'features'}: disk full (File "
                              "too large); the partial entry was removed. Free disk space, point "
                              "LLMCTL_CACHE_DIR at another disk, or set data.cache: false.", before)
    assert list((cache / "features").iterdir()) == []  # no partial entry
    assert not (tmp_path / "run").exists()
