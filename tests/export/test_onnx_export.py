"""`llmctl export RUN --format onnx` and `llmctl predict` on the exported folder, through the real
CLI on the tiny checkpoints: the export prints its check against PyTorch, the folder predicts
exactly what the run predicts (same labels, scores within float tolerance), a LoRA run is merged
first, and what ONNX export does not cover is one line with its exit code and no folder.
By default a LoRA GPT-2 classifier and a BERT QA model; BERT classification, NER, T5 and the
multiple-choice head under -m slow."""

import json
import random

import pytest

from helpers import (ONE_THREAD, REPO, build_recipe, error_lines, finetune_json, keyword_sentiment_rows, ner_sentence,
                     run_cli, write_conll, write_csv, write_recipe)
from llmctl.errors import EXIT_GATE, EXIT_MODEL, EXIT_OK, EXIT_USAGE
from qa_helpers import flat_rows, make_articles, qa_recipe, write_jsonl, write_squad

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'llmctl[onnx]')")
pytest.importorskip("onnxscript", reason="the onnx extra is not installed (pip install 'llmctl[onnx]')")

REVIEWS = ["the film was truly wonderful", "the plot was really awful", "the acting was very dull",
           "the music was quite brilliant", "a great and moving film", "the ending was lifeless"]


def export_onnx(run, out, *args):
    """Export and check what the user sees: the check line, export.json, and the folder itself."""
    exported = run_cli("export", str(run), "--output", str(out), "--format", "onnx", *args, env=ONE_THREAD)
    assert exported.exit_code == EXIT_OK, exported.stderr[-3000:]
    check = json.loads((out / "export.json").read_text())["check"]
    assert check["passed"] and check["max_abs_diff"] <= 1e-4 and check["tolerance"] == 1e-4
    assert "onnx check: onnxruntime matches PyTorch" in exported.stderr
    names = {p.name for p in out.iterdir()}
    assert {"model.onnx", "config.json", "llmctl.json", "export.json", "tokenizer.json"} <= names, names
    assert not names & {"model.safetensors", "adapter_model.safetensors", "adapter_config.json"}
    assert not list(out.parent.glob(f".{out.name}.partial"))
    return exported


def predict(folder, inputs):
    predicted = run_cli("predict", str(folder), "--input", str(inputs), env=ONE_THREAD)
    assert predicted.exit_code == EXIT_OK, predicted.stderr[-3000:]
    return [json.loads(line) for line in predicted.stdout.splitlines()]


def assert_same(onnx, torch, where="row"):
    """Same structure, strings and integers; floats within what fp32 kernels of two runtimes differ by."""
    if isinstance(torch, dict):
        assert isinstance(onnx, dict) and onnx.keys() == torch.keys(), (where, onnx, torch)
        for key in torch:
            assert_same(onnx[key], torch[key], f"{where}.{key}")
    elif isinstance(torch, list):
        assert isinstance(onnx, list) and len(onnx) == len(torch), (where, onnx, torch)
        for i, (a, b) in enumerate(zip(onnx, torch)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(torch, float):
        assert onnx == pytest.approx(torch, rel=1e-4, abs=1e-5), where
    else:
        assert onnx == torch, where


def exported_equals_run(run, out, inputs) -> list[dict]:
    from_run, from_onnx = predict(run, inputs), predict(out, inputs)
    assert from_run  # the comparison below must not pass on nothing
    for i, (a, b) in enumerate(zip(from_onnx, from_run)):
        assert_same(a, b, f"row {i}")
    assert len(from_onnx) == len(from_run)
    return from_onnx


# -- classification: a LoRA BERT run (merged on export) and a full GPT-2 run ------------------
@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("onnx-cls")
    train = write_csv(tmp / "train.csv", keyword_sentiment_rows(96, seed=0))
    inputs = tmp / "in.txt"
    inputs.write_text("\n".join(REVIEWS) + "\n")
    return tmp, train, inputs


@pytest.mark.slow  # the default set exports BERT in the QA test and a LoRA run in the GPT-2 one
def test_bert_classification_exports_and_predicts_the_same(tiny_models, reviews):
    tmp, train, inputs = reviews
    run, out = tmp / "bert-run", tmp / "bert-onnx"
    finetune_json(write_recipe(tmp / "bert.yaml", tiny_models["bert"], train, None, run, train={"save_every": 1000}))
    result = export_onnx(run, out, "--json").json()
    assert result["format"] == "onnx" and result["merged_adapter"] is False and result["check"]["passed"]
    assert result["check"]["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    rows = exported_equals_run(run, out, inputs)
    assert [r["sentence"] for r in rows] == REVIEWS
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")  # the run's card, for the graph
    assert card.data.library_name == "onnx" and {"llmctl", "onnx"} <= set(card.data.tags)
    assert "exported to ONNX (`model.onnx`" in card.text


@pytest.fixture(scope="module")
def gpt2_onnx(tiny_models, reviews):
    """A LoRA GPT-2 classification run and its ONNX export: (run, folder, what export printed)."""
    tmp, train, _ = reviews
    run, out = tmp / "gpt2-run", tmp / "gpt2-onnx"
    finetune_json(write_recipe(tmp / "gpt2.yaml", tiny_models["gpt2"], train, None, run, peft={"r": 8},
                          train={"learning_rate": 5e-3, "save_every": 1000}))
    return run, out, export_onnx(run, out)


@pytest.mark.xdist_group("onnx-gpt2")  # shares gpt2_onnx with the refusals below
def test_lora_gpt2_classification_exports_merged_and_predicts_the_same(gpt2_onnx, reviews):
    run, out, exported = gpt2_onnx
    assert f"wrote {out} (onnx, float32, adapter merged into its base," in exported.stderr
    meta = json.loads((out / "llmctl.json").read_text())
    assert meta["task"] == "classification" and meta["exported_from"]["merged_adapter"] is True and "peft" not in meta
    # GPT-2 takes token_type_ids but adds an embedding for zeros it skips for None: not in the graph
    assert json.loads((out / "export.json").read_text())["check"]["inputs"] == ["input_ids", "attention_mask"]
    # Rows of very different lengths in one batch: padding and each row's last real token
    inputs = reviews[0] / "gpt2-in.txt"
    inputs.write_text("\n".join(REVIEWS + ["film", " ".join(REVIEWS)]) + "\n")
    rows = exported_equals_run(run, out, inputs)
    assert [r["sentence"] for r in rows] == REVIEWS + ["film", " ".join(REVIEWS)]
    assert all(r["label"] in ("negative", "positive") for r in rows)


@pytest.mark.xdist_group("onnx-gpt2")
def test_eval_of_the_export_scores_like_the_run(gpt2_onnx, reviews):
    """`llmctl eval` on the ONNX folder: the run's metrics (fp32 on both sides; classification
    computes its loss from the logits, so the graph's logits give it too), and --fail-under gates
    it the same way."""
    run, out, _ = gpt2_onnx
    data = reviews[1]
    scored = [run_cli("eval", str(folder), "--data", str(data), "--json", *extra, env=ONE_THREAD)
              for folder, extra in ((run, ["--precision", "fp32"]), (out, []))]
    assert all(r.exit_code == EXIT_OK for r in scored), [r.stderr[-2000:] for r in scored]
    from_run, from_onnx = (r.json() for r in scored)
    assert from_onnx["precision"] == "fp32" and from_onnx["samples"] == 96
    assert {"loss", "accuracy"} <= from_onnx["metrics"].keys()
    assert from_onnx["metrics"] == pytest.approx(from_run["metrics"], abs=1e-5)
    failed = run_cli("eval", str(out), "--data", str(data), "--fail-under", "accuracy=1.01", env=ONE_THREAD)
    assert failed.exit_code == EXIT_GATE, failed.stderr
    refused = run_cli("eval", str(out), "--data", str(data), "--precision", "bf16", env=ONE_THREAD)
    assert refused.exit_code == EXIT_USAGE and "an ONNX export computes in fp32" in refused.stderr


@pytest.mark.slow
def test_t5_classification_exports_and_predicts_the_same(tiny_models, reviews):
    tmp, train, inputs = reviews
    run, out = tmp / "t5-run", tmp / "t5-onnx"
    finetune_json(write_recipe(tmp / "t5.yaml", tiny_models["t5"], train, None, run, train={"save_every": 1000}))
    export_onnx(run, out)
    exported_equals_run(run, out, inputs)


# -- QA and NER (BERT) -----------------------------------------------------------------------
def test_qa_run_exports_and_predicts_the_same_answers(tiny_models, tmp_path):
    # A full fine-tune: peft's question-answering wrapper drops token_type_ids, so a LoRA QA run
    # trains and predicts without them while its merged model (either format) uses them.
    train = write_squad(tmp_path / "train.json", make_articles(n_articles=2, paragraphs=2, people=2, seed=0))
    run, out = tmp_path / "run", tmp_path / "onnx"
    finetune_json(qa_recipe(tmp_path / "qa.yaml", tiny_models["bert"], train, None, run,
                       train={"epochs": 1, "learning_rate": 5e-3, "save_every": 1000}))
    result = export_onnx(run, out, "--json").json()
    assert result["check"]["outputs"] == ["start_logits", "end_logits"]
    assert result["check"]["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert json.loads((out / "llmctl.json").read_text())["task"] == "qa"
    questions = [{"question": r["question"], "context": r["context"]}
                 for r in flat_rows(make_articles(n_articles=1, paragraphs=2, people=2, seed=1))]
    # Contexts longer than max_length (48 tokens): several windows per question, stitched back
    rows = exported_equals_run(run, out, write_jsonl(tmp_path / "q.jsonl", questions))
    assert len(rows) == len(questions) and all(r["answer"] for r in rows)


@pytest.mark.slow
def test_ner_run_exports_and_predicts_the_same_entities(tiny_models, tmp_path):
    rng = random.Random(0)
    train = write_conll(tmp_path / "train.txt", [ner_sentence(rng) for _ in range(48)])
    run, out = tmp_path / "run", tmp_path / "onnx"
    finetune_json(build_recipe(tmp_path / "ner.yaml", "ner", tiny_models["bert"], run,
                          {"train": str(train), "validation": None, "max_length": 24},
                          train={"epochs": 4, "learning_rate": 5e-3, "save_every": 1000}))
    export_onnx(run, out)
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"text": "Alice Smith works for Acme Corp in Paris."},
                                                 {"tokens": ["Bob", "was", "born", "in", "Tokyo", "."]}])
    rows = exported_equals_run(run, out, inputs)
    assert any(row["entities"] for row in rows)


# -- what ONNX export does not cover ---------------------------------------------------------
def test_causal_lm_run_is_refused_before_the_model_loads(tiny_models, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": f"{r} ."} for r in REVIEWS * 4])
    run = tmp_path / "run"
    finetune_json(build_recipe(tmp_path / "lm.yaml", "causal-lm", tiny_models["gpt2"], run,
                          {"train": str(train), "validation": None, "max_length": 16},
                          train={"save_every": 1000}))
    refused = run_cli("export", str(run), "--output", str(tmp_path / "out"), "--format", "onnx")
    assert refused.exit_code == EXIT_USAGE
    assert error_lines(refused.stderr) == [refused.stderr.strip()]
    assert "task 'causal-lm'" in refused.stderr and "llmctl generate" in refused.stderr
    assert not (tmp_path / "out").exists()


def test_architecture_the_exporter_cannot_trace_is_one_line_naming_it(tiny_models, tmp_path):
    """Longformer's sliding-window attention branches on the data, which torch.export refuses."""
    from transformers import AutoTokenizer, LongformerConfig, LongformerForSequenceClassification

    folder = tmp_path / "longformer"
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bert"])
    config = LongformerConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=32, max_position_embeddings=66, attention_window=4,
                              pad_token_id=tokenizer.pad_token_id, num_labels=2)
    LongformerForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    refused = run_cli("export", str(folder), "--output", str(tmp_path / "out"), "--format", "onnx", env=ONE_THREAD)
    assert refused.exit_code == EXIT_MODEL, refused.stderr[-2000:]
    assert len(error_lines(refused.stderr)) == 1
    assert "a 'longformer' model (LongformerForSequenceClassification) does not export to ONNX" in refused.stderr
    assert "--format safetensors" in refused.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial"))


@pytest.mark.xdist_group("onnx-gpt2")
def test_missing_onnx_packages_and_flags_the_graph_cannot_honour(gpt2_onnx, reviews, tmp_path):
    run, exported, _ = gpt2_onnx
    inputs = reviews[2]
    # A module that fails to import stands for a missing package (it shadows the installed one).
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "onnxruntime.py").write_text("raise ImportError('No module named onnxruntime')\n")
    missing = {"PYTHONPATH": f"{shadow}:{REPO}"}
    refused = run_cli("export", str(run), "--output", str(tmp_path / "out"), "--format", "onnx",
                      env=missing)
    assert refused.exit_code == EXIT_USAGE and len(error_lines(refused.stderr)) == 1
    assert "'onnxruntime' package" in refused.stderr and "llmctl[onnx]" in refused.stderr
    assert not (tmp_path / "out").exists()
    predicted = run_cli("predict", str(exported), "--input", str(inputs), env=missing)
    assert predicted.exit_code == EXIT_USAGE and "llmctl[onnx]" in predicted.stderr and not predicted.stdout
    unknown = run_cli("export", str(run), "--output", str(tmp_path / "out"), "--format", "tflite")
    assert unknown.exit_code == EXIT_USAGE and "safetensors or onnx" in unknown.stderr
    for flag, value, said in (("--precision", "bf16", "computes in fp32"), ("--device", "cuda", "runs on the CPU")):
        refused = run_cli("predict", str(exported), "--input", str(inputs), flag, value)
        assert refused.exit_code == EXIT_USAGE and said in refused.stderr and not refused.stdout


@pytest.mark.slow
def test_multiple_choice_run_exports_with_a_choices_axis_and_predicts_the_same(tiny_models, tmp_path):
    """A BERT multiple-choice run through the CLI: inputs shaped [batch, choices, length]."""
    from test_multiple_choice import SWAG_KEYS, swag_rows
    from test_multiple_choice import write_jsonl as write_rows

    from llmctl.export.onnx_model import open_session

    train = write_rows(tmp_path / "swag.jsonl", swag_rows(24))
    inputs = write_rows(tmp_path / "in.jsonl", [{k: v for k, v in r.items() if k != "label"} for r in swag_rows(3)])
    run, out = tmp_path / "run", tmp_path / "onnx"
    finetune_json(build_recipe(tmp_path / "mc.yaml", "multiple-choice", tiny_models["bert"], run,
                          {"train": str(train), "validation": None, **SWAG_KEYS}, train={"max_steps": 2}))
    assert export_onnx(run, out, "--json").json()["check"]["passed"]
    session = open_session(out / "model.onnx")
    assert [i.shape for i in session.get_inputs()] == [["batch", "choices", "sequence"]] * 3
    rows = exported_equals_run(run, out, inputs)
    assert len(rows) == 3 and all(len(r["scores"]) == 4 and r["ending"] for r in rows), rows[0]