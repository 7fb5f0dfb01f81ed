"""Issue 27 items 1-4 and 11: every metric names the rows it was computed on, and the same rows
give the same numbers. One tiny classification run (validation cut by data.max_eval_samples, a
whole test file) is evaluated, reported and carded through the CLI."""

import json
import re

import pytest

from helpers import (ONE_THREAD, build_recipe, error_lines, keyword_sentiment_rows, run_cli, write_csv,
                     write_recipe)
from llmctl.errors import EXIT_OK, EXIT_USAGE


@pytest.fixture(scope="module")
def run(tiny_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rows")
    train = write_csv(tmp / "train.csv", keyword_sentiment_rows(32, seed=0))
    valid = write_csv(tmp / "valid.csv", keyword_sentiment_rows(20, seed=1))
    test = write_csv(tmp / "test.csv", keyword_sentiment_rows(12, seed=2))
    recipe = write_recipe(tmp / "r.yaml", tiny_models["bert"], train, valid, tmp / "run",
                          data={"test": str(test), "max_eval_samples": 6}, train={"save_every": 1000})
    result = run_cli("finetune", str(recipe), "--json", env=ONE_THREAD)
    assert result.exit_code == EXIT_OK, result.stderr[-3000:]
    return tmp, result.json()


def test_eval_data_scores_the_whole_file_unless_max_samples(run):
    """Item 1: the training recipe's max_eval_samples (6) no longer cuts `eval --data`."""
    tmp, _ = run
    whole = run_cli("eval", str(tmp / "run"), "--data", str(tmp / "valid.csv"), "--json", env=ONE_THREAD)
    assert whole.exit_code == EXIT_OK, whole.stderr[-2000:]
    assert whole.json()["samples"] == 20
    assert whole.json()["rows"] == {"split": None, "data": str(tmp / "valid.csv"), "rows": 20, "cut_by": None}
    cut = run_cli("eval", str(tmp / "run"), "--data", str(tmp / "valid.csv"), "--max-samples", "5", "--json",
                  env=ONE_THREAD)
    assert cut.exit_code == EXIT_OK, cut.stderr[-2000:]
    assert cut.json()["samples"] == 5 and cut.json()["rows"]["cut_by"] == "--max-samples 5"
    # The run's own validation split, scored again, is scored whole too.
    again = run_cli("eval", str(tmp / "run"), "--json", env=ONE_THREAD)
    assert again.exit_code == EXIT_OK and again.json()["samples"] == 20
    assert again.json()["rows"] == {"split": "validation", "data": str(tmp / "valid.csv"), "rows": 20, "cut_by": None}


def test_metrics_json_and_card_name_the_rows_of_every_metric(run):
    """Item 2: max_eval_samples cuts validation only; metrics.json and the card say which rows."""
    tmp, result = run
    assert result["metric_rows"]["metrics"] == {"split": "validation", "data": str(tmp / "valid.csv"), "rows": 6,
                                                "cut_by": "data.max_eval_samples 6"}
    assert result["metric_rows"]["test_metrics"] == {"split": "test", "data": str(tmp / "test.csv"), "rows": 12,
                                                     "cut_by": None}
    assert json.loads((tmp / "run" / "metrics.json").read_text())["metric_rows"] == result["metric_rows"]
    card = (tmp / "run" / "model" / "README.md").read_text()
    assert "- test: `test.csv`: 12 rows\n" in card
    assert "- validation: `valid.csv`: 6 rows (the first 6: data.max_eval_samples 6)" in card
    assert "on the first 6 rows of valid.csv (data.max_eval_samples 6):" in card
    assert "scored once after training on all 12 rows of test.csv:" in card
    # Item 4: the Hub's tag, not the task's own name.
    assert "pipeline_tag: text-classification" in card


def test_eval_split_names_the_runs_own_splits(run):
    """Item 11: --split test / train on a run trained from local files evaluates those files."""
    tmp, result = run
    test = run_cli("eval", str(tmp / "run"), "--split", "test", "--json", env=ONE_THREAD)
    assert test.exit_code == EXIT_OK, test.stderr[-2000:]
    assert test.json()["data"] == str(tmp / "test.csv") and test.json()["samples"] == 12
    assert test.json()["rows"]["split"] == "test"
    # The same rows as the run's own test metrics give the same numbers.
    assert test.json()["metrics"]["accuracy"] == pytest.approx(result["test_metrics"]["accuracy"])
    wrong = run_cli("eval", str(tmp / "run"), "--split", "dev")
    assert wrong.exit_code == EXIT_USAGE
    assert error_lines(wrong.stderr) == [
        "error: --split dev: the run has no dev split; its splits are train (train.csv), validation (valid.csv), "
        "test (test.csv). Use --split train / validation / test, or --data FILE to score another file."]


def test_report_per_class_table_uses_the_rows_of_the_metrics(run):
    """Item 3: the per-class table is computed on the 6 rows the validation metrics cover, and says so."""
    tmp, result = run
    page = tmp / "report.html"
    out = run_cli("report", str(tmp / "run"), "--output", str(page), env=ONE_THREAD)
    assert out.exit_code == EXIT_OK, out.stderr[-2000:]
    html = page.read_text()
    assert "Computed from the same predictions, on the first 6 rows of valid.csv: the rows the final " \
           "validation metrics cover." in html
    assert "On the first 6 rows of valid.csv (data.max_eval_samples 6)." in html
    assert "On all 12 rows of test.csv." in html
    per_class = html[html.index('id="per-class"'):html.index('id="pictures"')]
    supports = [int(n) for n in re.findall(r"<td[^>]*>(\d+)</td>\s*</tr>", per_class)]
    assert sum(supports) == 6, per_class


def test_every_task_has_a_hub_pipeline_tag(tiny_models, tmp_path):
    """Item 4: each task's card tag is one of the Hub's pipeline tags (huggingface.js PIPELINE_DATA);
    a causal-LM run's card says text-generation, not causal-lm."""
    from llmctl.runs.model_card import PIPELINE_TAGS
    from llmctl.tasks import TASKS

    hub_tags = {"text-classification", "token-classification", "question-answering", "multiple-choice",
                "text-generation", "text2text-generation", "fill-mask", "summarization", "translation",
                "sentence-similarity"}
    assert {task: PIPELINE_TAGS.get(task) in hub_tags for task in TASKS} == {task: True for task in TASKS}
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": f"alice met bob in paris on day {i}"}) + "\n" for i in range(8)))
    recipe = build_recipe(tmp_path / "lm.yaml", "causal-lm", tiny_models["gpt2"], tmp_path / "lm",
                          {"train": str(train), "validation": None, "max_length": 16}, train={"max_steps": 1})
    done = run_cli("finetune", str(recipe), env=ONE_THREAD)
    assert done.exit_code == EXIT_OK, done.stderr[-2000:]
    assert "pipeline_tag: text-generation" in (tmp_path / "lm" / "model" / "README.md").read_text()
