"""run_cli runs llmctl inside the test process by default (tests/support/inprocess.py): what a
user sees must be exactly what a real `python -m llmctl` subprocess shows, and the call must leave
the test process as it found it."""

import logging
import os
import re
import signal
import shutil
import warnings

import pytest

from helpers import SMALL_TRAIN, build_recipe, error_lines, run_cli, sentiment_rows, write_csv
from support.inprocess import needs_process


def both(*args, tmp_path, **kwargs):
    """The same command in-process and in a subprocess, each with a feature cache of its own. The
    subprocess gets the decoding plan the first run timed (as a second run on one machine reads the
    first's): timed afresh on a busy machine, `--precision auto` may pick another dtype."""
    inproc = run_cli(*args, env={"LLMCTL_CACHE_DIR": str(tmp_path / "cache-in")}, **kwargs)
    if (tmp_path / "cache-in" / "decoding").is_dir():
        shutil.copytree(tmp_path / "cache-in" / "decoding", tmp_path / "cache-sub" / "decoding")
    return inproc, run_cli(*args, env={"LLMCTL_CACHE_DIR": str(tmp_path / "cache-sub")}, subprocess=True, **kwargs)


def steady(text: str) -> str:
    """`text` without what depends on the machine's speed or the cache folder's name."""
    text = re.sub(r"[\d.,]+ (rows|samples|tokens)/s", "# \\1/s", text)
    text = re.sub(r"\b(eta|in) [\d.hms]+", "\\1 #", text)
    text = re.sub(r'"(runtime_s|tokens_per_second|samples_per_second)": [\d.e-]+', '"\\1": #', text)
    text = re.sub(r'"step_ms": \{[^}]*\}', '"step_ms": #', text)  # generate's timed decoding plan
    return re.sub(r"-(in|sub)\b", "-#", text)  # the cache and run folders of each way


def assert_same(inproc, sub):
    assert (inproc.exit_code, steady(inproc.stdout), steady(inproc.stderr)) == \
        (sub.exit_code, steady(sub.stdout), steady(sub.stderr))


@pytest.mark.parametrize("args", [
    ("--version",),
    ("no-such-command",),  # click's usage error: exit 2, "Usage: python -m llmctl ..."
    ("finetune",),  # a missing argument
    ("recipes", "list"),
    ("finetune", "missing.yaml"),  # llmctl's own error line
], ids=["version", "unknown-command", "missing-argument", "recipes-list", "missing-recipe"])
def test_quick_commands_match_a_subprocess(args, tmp_path):
    inproc, sub = both(*args, cwd=tmp_path, tmp_path=tmp_path)
    assert_same(inproc, sub)


def test_dry_run_and_data_error_match_a_subprocess(tmp_path, tiny_models):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(8))
    data = {"train": str(train), "text_columns": ["sentence"], "label_column": "label", "max_length": 16}
    recipe = build_recipe(tmp_path / "r.yaml", "classification", tiny_models["bert"], tmp_path / "run", data)
    assert_same(*both("finetune", str(recipe), "--dry-run", tmp_path=tmp_path))
    assert_same(*both("finetune", str(recipe), "--dry-run", "--json", tmp_path=tmp_path))
    bad = build_recipe(tmp_path / "bad.yaml", "classification", tiny_models["bert"], tmp_path / "run",
                       data | {"label_column": "labl"})
    inproc, sub = both("finetune", str(bad), tmp_path=tmp_path)
    assert_same(inproc, sub)
    assert inproc.exit_code == 3 and len(error_lines(inproc.stderr)) == 1
    assert not (tmp_path / "run").exists()


def test_generate_from_stdin_matches_a_subprocess(tmp_path, tiny_models):
    inproc, sub = both("generate", str(tiny_models["gpt2"]), "--max-new-tokens", "4", "--json", input="Alice\nthe\n",
                       tmp_path=tmp_path)
    assert inproc.exit_code == 0, inproc.stderr
    assert_same(inproc, sub)


def test_training_run_reports_what_a_subprocess_reports(tmp_path, tiny_models):
    """A real finetune: the same metrics (seeded, fp32), the same lines on stderr but for speeds and times."""
    train = write_csv(tmp_path / "train.csv", sentiment_rows(16))
    data = {"train": str(train), "validation": str(train), "text_columns": ["sentence"], "label_column": "label",
            "max_length": 16}
    recipe = build_recipe(tmp_path / "r.yaml", "classification", tiny_models["bert"], tmp_path / "run", data,
                          train=SMALL_TRAIN | {"logging_steps": 1})
    inproc, sub = (run_cli("finetune", str(recipe), "--json", "--output-dir", str(tmp_path / f"run-{way}"),
                           env={"LLMCTL_CACHE_DIR": str(tmp_path / f"cache-{way}"), "OMP_NUM_THREADS": "1"},
                           subprocess=way == "sub") for way in ("in", "sub"))
    assert inproc.exit_code == sub.exit_code == 0, inproc.stderr + sub.stderr
    assert inproc.json()["metrics"] == sub.json()["metrics"]
    assert steady(inproc.stderr) == steady(sub.stderr)


def test_a_call_leaves_the_test_process_as_it_found_it(tmp_path):
    before = (dict(os.environ), os.getcwd(), list(warnings.filters), signal.getsignal(signal.SIGTERM),
              logging.getLogger("llmctl").handlers[:], logging.getLogger().handlers[:])
    result = run_cli("--debug", "finetune", "missing.yaml", cwd=tmp_path, env={"LLMCTL_CACHE_DIR": str(tmp_path)})
    assert result.exit_code != 0 and error_lines(result.stderr)
    after = (dict(os.environ), os.getcwd(), list(warnings.filters), signal.getsignal(signal.SIGTERM),
             logging.getLogger("llmctl").handlers[:], logging.getLogger().handlers[:])
    assert after == before  # --debug set LLMCTL_DEBUG, main() set a SIGTERM handler: both undone


def test_variables_read_at_import_need_a_real_process():
    assert needs_process({"HF_HUB_OFFLINE": None})
    assert needs_process({"LLMCTL_FAULT": "pause@1"})
    assert needs_process({"PYTHONPATH": "/elsewhere"})
    assert not needs_process({"LLMCTL_CACHE_DIR": "/tmp/x", "OMP_NUM_THREADS": "1", "LLMCTL_DEBUG": "1"})
    assert not needs_process({"HF_HUB_OFFLINE": "1"})  # as it already is
