"""NER end to end through the real CLI: finetune -> eval -> predict per model family, and bad data."""

import json
import random

import pytest

from helpers import ONE_THREAD, build_recipe, ner_sentence as sentence, run_cli, write_conll
from llmctl.errors import EXIT_DATA, EXIT_GATE, EXIT_OK


@pytest.fixture(scope="module")
def ner_files(tmp_path_factory):
    rng = random.Random(0)
    root = tmp_path_factory.mktemp("ner")
    train = write_conll(root / "train.txt", [sentence(rng) for _ in range(48)])
    long = sum((sentence(rng) for _ in range(4)), [])  # longer than max_length: windows
    valid = write_conll(root / "valid.txt", [sentence(rng) for _ in range(11)] + [long])
    return root, train, valid


def ner_recipe(root, model, train, valid, out, training=None, **data):
    """root/<out name>.yaml: a small NER recipe; `data` adds data keys, `training` train keys."""
    return build_recipe(root / f"{out.name}.yaml", "ner", model, out,
                        {"train": str(train), "validation": str(valid) if valid else None, "max_length": 24} | data,
                        train={"epochs": 2, "learning_rate": 2e-3, "logging_steps": 4} | (training or {}))


@pytest.mark.parametrize("family", ["bert", "gpt2", "t5"])
def test_finetune_eval_predict(family, tiny_models, ner_files, tmp_path):
    root, train, valid = ner_files
    run_dir = tmp_path / f"run-{family}"
    # Trained enough (4 epochs at 5e-3) that every family tags the toy sentences: F1 0.79 to 0.99
    # over seeds 1, 2 and 42, and the predictions below hold for each of them.
    recipe = ner_recipe(tmp_path, tiny_models[family], train, valid, run_dir, training={"epochs": 4, "learning_rate": 5e-3})
    result = run_cli("finetune", str(recipe), "--json", env=ONE_THREAD)
    assert result.exit_code == EXIT_OK, result.stderr
    out = result.json()
    assert {"loss", "precision", "recall", "f1", "accuracy", "PER_f1", "LOC_number", "ORG_recall"} <= set(out["metrics"])
    assert out["metrics"]["PER_number"] == 15 and 0.5 <= out["metrics"]["f1"] <= 1
    assert "were split into overlapping windows" in result.stderr
    assert "PER_f1" not in result.stderr  # eval log lines keep to the overall scores

    from transformers import AutoConfig, AutoModelForTokenClassification

    config = AutoConfig.from_pretrained(run_dir / "model")
    assert config.id2label == {0: "O", 1: "B-LOC", 2: "I-LOC", 3: "B-ORG", 4: "I-ORG", 5: "B-PER", 6: "I-PER"}
    AutoModelForTokenClassification.from_pretrained(run_dir / "model")

    evaluated = run_cli("eval", str(run_dir), "--json", env=ONE_THREAD)
    assert evaluated.exit_code == EXIT_OK, evaluated.stderr
    assert evaluated.json()["metrics"]["f1"] == pytest.approx(out["metrics"]["f1"], abs=0.05)
    assert evaluated.json()["samples"] == 12

    inputs = tmp_path / "in.jsonl"
    inputs.write_text(json.dumps({"text": "Alice Smith works for Acme Corp in Paris."}) + "\n"
                      + json.dumps({"tokens": ["Bob", "was", "born", "in", "Tokyo", "."]}) + "\n")
    predicted = run_cli("predict", str(run_dir), "--input", str(inputs), env=ONE_THREAD)
    assert predicted.exit_code == EXIT_OK, predicted.stderr
    rows = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert rows[0]["text"] == "Alice Smith works for Acme Corp in Paris." and rows[1]["tokens"][0] == "Bob"
    assert len(rows[1]["tags"]) == 6
    # The checks on entities below must not pass vacuously: the model found them.
    assert {("Alice Smith", "PER"), ("Paris", "LOC")} <= {(e["text"], e["type"]) for e in rows[0]["entities"]}
    assert rows[1]["tags"] == ["B-PER", "O", "O", "O", "B-LOC", "O"]
    assert [(e["text"], e["type"], e["start"], e["end"]) for e in rows[1]["entities"]] == [
        ("Bob", "PER", 0, 1), ("Tokyo", "LOC", 4, 5)]
    for row in rows:
        assert row["entities"]
        for ent in row["entities"]:
            assert set(ent) == {"text", "type", "start", "end", "score"} and ent["type"] in ("PER", "LOC", "ORG")
            assert 0 < ent["score"] <= 1
            if "text" in row and row.get("text"):
                assert row["text"][ent["start"]:ent["end"]] == ent["text"]


def test_eval_table_gate_and_raw_text_predict(tiny_models, ner_files, tmp_path):
    root, train, valid = ner_files
    run_dir = tmp_path / "run"
    recipe = ner_recipe(tmp_path, tiny_models["bert"], train, valid, run_dir, label_all_subtokens=True)
    assert run_cli("finetune", str(recipe), "--max-steps", "3").exit_code == 0

    table = run_cli("eval", str(run_dir), "--data", str(valid), "--fail-under", "f1=1.01")
    assert table.exit_code == EXIT_GATE
    assert "Quality gate failed: f1" in table.stderr
    header = next(line for line in table.stdout.splitlines() if "precision" in line and "type" in line)
    assert header.split() == ["type", "precision", "recall", "f1", "number"]
    assert any(line.split()[:1] == ["PER"] and line.split()[-1] == "15" for line in table.stdout.splitlines())

    text = tmp_path / "in.txt"
    text.write_text("Grace Khan was born in Berlin.\n\nEmma works for Globex.\n")
    predicted = run_cli("predict", str(run_dir), "--input", str(text), "--json")
    assert predicted.exit_code == 0, predicted.stderr
    rows = predicted.json()["predictions"]
    assert [r["text"] for r in rows] == ["Grace Khan was born in Berlin.", "Emma works for Globex."]


def test_bad_data_fails_before_the_model_loads(tmp_path, ner_files):
    root, train, _ = ner_files
    valid = tmp_path / "valid.txt"
    valid.write_text("Bonn B-LOC\n\nthe O\nEU B-GPE\n")
    recipe = ner_recipe(tmp_path, tmp_path / "no-such-model", train, valid, tmp_path / "run")
    result = run_cli("finetune", str(recipe))
    assert result.exit_code == EXIT_DATA  # a data error, not "model not found": data is checked first
    assert f"{valid}:4: tag 'B-GPE' was not seen in training" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()

    iobes = tmp_path / "iobes.txt"
    iobes.write_text("Alice B-PER\nSmith E-PER\n\n")
    bad = ner_recipe(tmp_path, tmp_path / "no-such-model", iobes, None, tmp_path / "run2")
    result = run_cli("finetune", str(bad))
    assert result.exit_code == EXIT_DATA
    assert f"{iobes}:2: tag 'E-PER' belongs to the IOBES/BILOU scheme" in result.stderr


def test_sped_up_ner_training_matches_the_stock_model(tiny_models, ner_files, tmp_path):
    """The CPU speed-ups (the last layer finished only at labelled positions among them) train
    the same BERT tagger as LLMCTL_CPU_SPEEDUPS=0 when no dropout makes the runs differ."""
    import torch
    from safetensors.torch import load_file

    from helpers import copy_without_dropout

    root, train, valid = ner_files
    model = copy_without_dropout(tiny_models["bert"], tmp_path / "bert-nodropout")
    metrics = {}
    for label, env in (("fast", {}), ("stock", {"LLMCTL_CPU_SPEEDUPS": "0"})):
        result = run_cli("finetune", str(ner_recipe(tmp_path, model, train, valid, tmp_path / label)), "--json", env=env)
        assert result.exit_code == 0, result.stderr
        metrics[label] = result.json()["metrics"]
    assert metrics["fast"]["loss"] == pytest.approx(metrics["stock"]["loss"], abs=1e-4)
    assert metrics["fast"]["f1"] == pytest.approx(metrics["stock"]["f1"], abs=1e-6)
    fast, stock = (load_file(str(tmp_path / label / "model" / "model.safetensors")) for label in ("fast", "stock"))
    assert set(fast) == set(stock)
    for key, value in stock.items():
        assert torch.allclose(fast[key], value, atol=1e-4), key
    applied = json.loads((tmp_path / "fast" / "environment.json").read_text())["cpu_speedups"]
    assert "labelled_positions_only" in applied and "first_position_only" not in applied
