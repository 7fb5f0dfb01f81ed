"""The pictures and diagnostics.json an NER and a SQuAD v2 run leave behind, opened and checked
against the run's own metrics (classification: tests/train/test_trackers.py, on its shared run)."""

import json
import random

import pytest

from helpers import build_recipe, finetune_json, ner_sentence, write_conll
from qa_helpers import make_articles, qa_recipe, write_squad
from test_trackers import picture


def test_ner_run_draws_per_entity_scores(tiny_models, tmp_path):
    rng = random.Random(0)
    train = write_conll(tmp_path / "train.txt", [ner_sentence(rng) for _ in range(48)])
    valid = write_conll(tmp_path / "valid.txt", [ner_sentence(rng) for _ in range(12)])
    run_dir = tmp_path / "run"
    recipe = build_recipe(tmp_path / "ner.yaml", "ner", tiny_models["bert"], run_dir,
                          {"train": str(train), "validation": str(valid), "max_length": 24},
                          train={"epochs": 2, "learning_rate": 5e-3, "logging_steps": 2})
    out = finetune_json(recipe)
    picture(run_dir / "curves.png")
    picture(run_dir / "entity_f1.png")
    diagnostics = json.loads((run_dir / "diagnostics.json").read_text())
    assert diagnostics["task"] == "ner" and diagnostics["step"] == out["best_step"]
    assert set(diagnostics["per_entity"]) == {"LOC", "ORG", "PER"}
    for kind, scores in diagnostics["per_entity"].items():
        for stat in ("precision", "recall", "f1", "number"):
            assert scores[stat] == pytest.approx(out["metrics"][f"{kind}_{stat}"]), (kind, stat)
    # One training-log line per logged step (every 2nd and the last): what curves.png draws.
    logged = [json.loads(line)["step"] for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert logged == [*range(2, out["train"]["steps"] + 1, 2)] + (
        [out["train"]["steps"]] if out["train"]["steps"] % 2 else [])


def test_squad_v2_run_draws_answerable_against_unanswerable(tiny_models, tmp_path):
    data = write_squad(tmp_path / "v2.json", make_articles(n_articles=2, paragraphs=1, people=2, seed=4,
                                                           unanswerable=2), "v2.0")
    run_dir = tmp_path / "run"
    recipe = qa_recipe(tmp_path / "qa.yaml", tiny_models["bert"], data, data, run_dir,
                       data={"version_2_with_negative": True})
    out = finetune_json(recipe)
    picture(run_dir / "curves.png")
    picture(run_dir / "qa_answerable.png")
    diagnostics = json.loads((run_dir / "diagnostics.json").read_text())
    assert diagnostics["task"] == "qa"
    assert diagnostics["answerable"] == {"exact": pytest.approx(out["metrics"]["HasAns_exact"]),
                                         "f1": pytest.approx(out["metrics"]["HasAns_f1"]), "count": 8}
    assert diagnostics["unanswerable"] == {"exact": pytest.approx(out["metrics"]["NoAns_exact"]),
                                           "f1": pytest.approx(out["metrics"]["NoAns_f1"]), "count": 4}
