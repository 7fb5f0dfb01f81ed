"""Issue 27 item 19: `eval --save-predictions FILE` for NER (tokens, predicted and reference tags),
QA (id, predicted answer, reference answers) and seq2seq (prediction and reference text), each row
from the same outputs as the metrics; causal-LM evaluation scores the loss of given text and
generates nothing, so the option is refused there before the model loads. Each run is a tiny one
trained through the CLI (one epoch, a few rows), evaluated the way a user would."""

import json
import random

import pytest

from helpers import ONE_THREAD, build_recipe, finetune_json, ner_sentence, run_cli, write_conll, write_jsonl
from llmctl.errors import EXIT_OK, EXIT_USAGE
from qa_helpers import make_articles, qa_recipe, write_squad
from test_seq2seq import label_word_rows, s2s_recipe


def saved(run_dir, target, *args):
    """`eval RUN --save-predictions TARGET --json`: (its JSON, the rows written)."""
    result = run_cli("eval", str(run_dir), "--save-predictions", str(target), "--json", *args, env=ONE_THREAD)
    assert result.exit_code == EXIT_OK, result.stderr[-2000:]
    out = result.json()
    assert out["predictions_file"] == str(target)
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(rows) == out["samples"]
    return out, rows


def test_ner_rows_hold_tokens_predicted_and_reference_tags(tiny_models, tmp_path):
    rng = random.Random(0)
    train = write_conll(tmp_path / "train.txt", [ner_sentence(rng) for _ in range(16)])
    sentences = [ner_sentence(rng) for _ in range(6)]
    valid = write_conll(tmp_path / "valid.txt", sentences)
    recipe = build_recipe(tmp_path / "ner.yaml", "ner", tiny_models["bert"], tmp_path / "run",
                          {"train": str(train), "validation": str(valid), "max_length": 24},
                          train={"learning_rate": 5e-3, "save_every": 1000})
    finetune_json(recipe)
    out, rows = saved(tmp_path / "run", tmp_path / "ner.jsonl")
    assert [r["tokens"] for r in rows] == [[w for w, _ in s] for s in sentences]
    assert [r["reference"] for r in rows] == [[t for _, t in s] for s in sentences]
    assert all(len(r["tags"]) == len(r["tokens"]) for r in rows)
    # The same outputs as the metrics: word accuracy of the saved tags is seqeval's accuracy.
    words = [(p, g) for r in rows for p, g in zip(r["tags"], r["reference"])]
    assert sum(p == g for p, g in words) / len(words) == pytest.approx(out["metrics"]["accuracy"])


def test_qa_rows_hold_id_answer_and_reference_answers(tiny_models, tmp_path):
    articles = make_articles(n_articles=1, paragraphs=1, people=2, seed=4, unanswerable=1)
    data = write_squad(tmp_path / "v2.json", articles, "v2.0")
    recipe = qa_recipe(tmp_path / "qa.yaml", tiny_models["bert"], data, data, tmp_path / "run",
                       data={"version_2_with_negative": True}, train={"save_every": 1000})
    finetune_json(recipe)
    out, rows = saved(tmp_path / "run", tmp_path / "qa.jsonl")
    questions = [qa for p in articles[0]["paragraphs"] for qa in p["qas"]]
    assert [r["id"] for r in rows] == [q["id"] for q in questions]
    assert [r["question"] for r in rows] == [q["question"] for q in questions]
    assert [r["reference"] for r in rows] == [[a["text"] for a in q["answers"]] for q in questions]
    assert rows[-1]["reference"] == []  # the unanswerable question
    assert all(isinstance(r["answer"], str) and isinstance(r["no_answer"], bool) for r in rows)
    # SQuAD v2's exact match, from the saved answers: the metric's own rows.
    exact = sum((r["answer"] in r["reference"]) if r["reference"] else r["answer"] == "" for r in rows)
    assert 100 * exact / len(rows) == pytest.approx(out["metrics"]["exact"])


def test_seq2seq_rows_hold_prediction_and_reference_text(tiny_models, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", label_word_rows(16))
    valid = write_jsonl(tmp_path / "valid.jsonl", label_word_rows(6))
    recipe = s2s_recipe(tmp_path / "r.yaml", tiny_models["t5"], train, valid, tmp_path / "run",
                        train_cfg={"epochs": 1, "save_every": 1000})
    finetune_json(recipe)
    out, rows = saved(tmp_path / "run", tmp_path / "s2s.jsonl", "--precision", "fp32")
    expected = label_word_rows(6)
    assert [r["source"] for r in rows] == [e["source"] for e in expected]
    assert [r["reference"] for r in rows] == [e["target"] for e in expected]
    assert all(isinstance(r["prediction"], str) for r in rows)
    same = sum(r["prediction"].strip().lower() == r["reference"].lower() for r in rows)
    assert same / len(rows) == pytest.approx(out["metrics"]["accuracy"])


def test_causal_lm_eval_refuses_save_predictions_before_loading(tiny_models, tmp_path):
    texts = write_jsonl(tmp_path / "t.jsonl", [{"text": f"the movie number {i} was great"} for i in range(8)])
    recipe = build_recipe(tmp_path / "lm.yaml", "causal-lm", tiny_models["gpt2"], tmp_path / "run",
                          {"train": str(texts), "validation": str(texts), "max_length": 16},
                          train={"save_every": 1000})
    finetune_json(recipe)
    target = tmp_path / "lm.jsonl"
    result = run_cli("eval", str(tmp_path / "run"), "--save-predictions", str(target))
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: --save-predictions is not available for causal-lm runs")
    assert not target.exists()
