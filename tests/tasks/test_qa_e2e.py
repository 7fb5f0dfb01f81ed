"""Question answering end to end through the real CLI: finetune -> eval -> predict, per model family."""

import json

import pytest

from helpers import REPO, run_cli
from llmctl.tasks.recipe import load_recipe
from qa_helpers import flat_rows, make_articles, qa_recipe, write_jsonl, write_squad

QUESTION = "Where was Maria Khan born?"
CONTEXT = "Maria Khan was born in Denver and later moved to Mumbai to become a pilot."


def check_predictions(rows, contexts):
    for row, context in zip(rows, contexts):
        assert set(row) >= {"id", "question", "answer", "start", "end", "score"}
        assert 0 <= row["score"] <= 1
        if row["start"] is not None:
            assert row["answer"] and context[row["start"]:row["end"]] == row["answer"]


@pytest.mark.parametrize("family", ["bert", "gpt2", "t5"])
def test_finetune_eval_predict(family, tiny_models, tmp_path):
    train = write_squad(tmp_path / "train.json", make_articles(n_articles=2, paragraphs=1, people=3, seed=0))
    valid_rows = flat_rows(make_articles(n_articles=1, paragraphs=1, people=3, seed=1))
    valid = write_jsonl(tmp_path / "valid.jsonl", valid_rows)  # the flat (Hub) layout
    run_dir = tmp_path / "run"
    recipe = qa_recipe(tmp_path / "r.yaml", tiny_models[family], train, valid, run_dir, train={"epochs": 2})
    result = run_cli("finetune", str(recipe), "--json")
    assert result.exit_code == 0, result.stderr
    out = result.json()
    assert set(out["metrics"]) == {"loss", "exact_match", "f1"}
    assert 0 <= out["metrics"]["f1"] <= 100 and out["metrics"]["loss"] > 0
    assert out["train"]["samples"] >= 2 * 12  # windows, at least one per question per epoch
    meta = json.loads((run_dir / "model" / "llmctl.json").read_text())
    assert meta["task"] == "qa" and meta["data"]["doc_stride"] == 16
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    assert AutoConfig.from_pretrained(run_dir / "model").pad_token_id is not None
    AutoModelForQuestionAnswering.from_pretrained(run_dir / "model")

    evaluated = run_cli("eval", str(run_dir), "--json", "--fail-under", "exact_match=0")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert set(evaluated.json()["metrics"]) == {"loss", "exact_match", "f1"}
    assert evaluated.json()["samples"] == len(valid_rows)

    inputs = write_jsonl(tmp_path / "in.jsonl", [{"question": r["question"], "context": r["context"]}
                                                  for r in valid_rows[:3]])
    predicted = run_cli("predict", str(run_dir), "--input", str(inputs))
    assert predicted.exit_code == 0, predicted.stderr
    rows = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert [r["question"] for r in rows] == [r["question"] for r in valid_rows[:3]]
    check_predictions(rows, [r["context"] for r in valid_rows[:3]])
    assert all("no_answer" not in r for r in rows)  # a v1 model always answers

    one = run_cli("predict", str(run_dir), "--question", QUESTION, "--context", CONTEXT, "--json")
    assert one.exit_code == 0, one.stderr
    (row,) = one.json()["predictions"]
    check_predictions([row], [CONTEXT])


def test_v2_eval_reports_breakdown_and_best_threshold(tiny_models, tmp_path):
    data = write_squad(tmp_path / "v2.json", make_articles(n_articles=2, paragraphs=1, people=2, seed=4,
                                                           unanswerable=2), "v2.0")
    run_dir = tmp_path / "run"
    recipe = qa_recipe(tmp_path / "r.yaml", tiny_models["bert"], data, data, run_dir,
                       data={"version_2_with_negative": True})
    result = run_cli("finetune", str(recipe), "--json")
    assert result.exit_code == 0, result.stderr
    evaluated = run_cli("eval", str(run_dir), "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    metrics = evaluated.json()["metrics"]
    assert {"exact", "f1", "exact_match", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1",
            "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"} <= set(metrics)
    assert metrics["HasAns_total"] == 8 and metrics["NoAns_total"] == 4
    assert metrics["best_f1"] >= metrics["f1"] - 1e-9  # the sweep includes the threshold in use
    # A v1 model (or recipe) on v2 data: one clear error, exit 3.
    v1_run = run_cli("eval", str(tmp_path / "run"), "--data", str(data), "--recipe", str(
        qa_recipe(tmp_path / "v1.yaml", tiny_models["bert"], data, data, run_dir)))
    assert v1_run.exit_code == 3 and "4 unanswerable questions" in v1_run.stderr

    one = run_cli("predict", str(run_dir), "--question", QUESTION, "--context", CONTEXT)
    row = json.loads(one.stdout)
    assert isinstance(row["no_answer"], bool)
    assert (row["answer"] == "") == row["no_answer"] and (row["start"] is None) == row["no_answer"]


QA_RECIPES = sorted((REPO / "llmctl" / "recipes" / "qa").glob("*.yaml"))


@pytest.mark.parametrize("path", QA_RECIPES, ids=lambda p: p.stem)
def test_qa_recipes_validate_and_open_with_their_command(path):
    first = path.read_text().splitlines()[0]
    assert first == f"# llmctl finetune qa/{path.stem}" or first.startswith(f"# llmctl finetune qa/{path.stem} "), first
    recipe = load_recipe(str(path))
    assert recipe.task == "qa" and recipe.output_dir.startswith("runs/")


def test_ships_the_promised_qa_recipes():
    assert {p.stem for p in QA_RECIPES} >= {"squad-bert", "squad_v2-bert", "squad-gpt2", "squad-t5"}
