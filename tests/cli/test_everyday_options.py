"""Options and outputs people expect (issue 27 items 15, 19, 13, 23): --json on every command
(report, recipes list/show/copy), a JSON error object on stdout when finetune or eval fail with
--json, and a copied recipe whose first line runs the copy."""

import json
import shlex

import pytest

from helpers import ONE_THREAD, run_cli, sentiment_rows, write_csv, write_recipe
from llmctl.errors import EXIT_MODEL, EXIT_USAGE


@pytest.fixture(scope="module")
def run(tiny_models, tmp_path_factory):
    """A small trained classification run with validation data."""
    tmp = tmp_path_factory.mktemp("everyday")
    train = write_csv(tmp / "train.csv", sentiment_rows(16))
    valid = write_csv(tmp / "valid.csv", sentiment_rows(6))
    recipe = write_recipe(tmp / "r.yaml", tiny_models["bert"], train, valid, tmp / "run")
    result = run_cli("finetune", str(recipe), env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    return tmp


def test_recipes_list_show_copy_json(tmp_path):
    listed = run_cli("recipes", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    recipes = {r["name"]: r for r in listed.json()["recipes"]}
    assert recipes["classification/sst2-gpt2"]["command"] == "llmctl finetune classification/sst2-gpt2"
    shown = run_cli("recipes", "show", "sst2-gpt2", "--json").json()
    assert shown["text"].startswith("# llmctl finetune classification/sst2-gpt2\n")
    assert shown["path"] == recipes["classification/sst2-gpt2"]["path"]
    copied = run_cli("recipes", "copy", "sst2-t5", str(tmp_path), "--json")
    assert copied.exit_code == 0, copied.stderr
    assert copied.json()["path"] == str(tmp_path / "sst2-t5.yaml")


def test_copied_recipe_header_runs_the_copy(tmp_path):
    dest = tmp_path / "my recipe.yaml"
    copied = run_cli("recipes", "copy", "sst2-minilm-local", str(dest))
    assert copied.exit_code == 0, copied.stderr
    first = dest.read_text().splitlines()[0]
    assert shlex.split(first[2:])[:3] == ["llmctl", "finetune", str(dest)]
    assert "--model" in first  # the rest of the command is kept


def test_report_json(run):
    result = run_cli("report", str(run / "run"), "--max-examples", "0", "--json")
    assert result.exit_code == 0, result.stderr
    out = result.json()
    assert out["path"] == str(run / "run" / "report.html") and (run / "run" / "report.html").is_file()
    assert isinstance(out["missing"], list)


def test_finetune_and_eval_failures_print_a_json_error(run, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((run / "r.yaml").read_text().replace("epochs: 1", "epoch: 1"))
    failed = run_cli("finetune", str(bad), "--json")
    assert failed.exit_code == EXIT_USAGE
    error = json.loads(failed.stdout)
    assert error["exit_code"] == EXIT_USAGE and "did you mean 'epochs'" in failed.stdout
    assert error["error"].startswith("Recipe ")
    assert failed.stderr.startswith("error: ")  # the line people read stays on stderr

    missing = run_cli("eval", str(tmp_path / "no-such-run"), "--json")
    assert missing.exit_code == EXIT_MODEL
    assert missing.json()["exit_code"] == EXIT_MODEL and "no-such-run" in missing.json()["error"]


def test_eval_save_predictions_has_each_prediction_and_reference(run, tmp_path):
    target = tmp_path / "preds.jsonl"
    result = run_cli("eval", str(run / "run"), "--save-predictions", str(target), "--json", env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    out = result.json()
    assert out["predictions_file"] == str(target)
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(rows) == out["samples"] == 6
    expected = sentiment_rows(6)
    assert [r["sentence"] for r in rows] == [e["sentence"] for e in expected]
    assert [r["reference"] for r in rows] == [str(e["label"]) for e in expected]
    accuracy = sum(r["label"] == r["reference"] for r in rows) / len(rows)
    assert accuracy == pytest.approx(out["metrics"]["accuracy"])


def test_predict_options_refused_on_a_classification_run(run, tmp_path):
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"sentence": "a great film"}\n')
    result = run_cli("predict", str(run / "run"), "--input", str(inputs), "--max-new-tokens", "3")
    assert result.exit_code == EXIT_USAGE
    assert "--max-new-tokens is for generative runs (causal-lm, seq2seq); this is a classification run." in result.stderr
