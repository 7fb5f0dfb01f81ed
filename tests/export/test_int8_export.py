"""`llmctl export RUN --format onnx --quantize int8` through the real CLI on the tiny BERT: the export
scores the int8 graph against the fp32 one on the run's validation split and says the change,
`predict` / `eval` on the int8 folder give what it reported, `--max-drop` refuses with the gate's
exit code and leaves no folder, and `--quantize` without `--format onnx` is a usage error before
anything loads."""

import json

import pytest

from helpers import ONE_THREAD, error_lines, keyword_sentiment_rows, run_cli, write_csv, write_recipe
from llmctl.errors import EXIT_GATE, EXIT_OK, EXIT_USAGE

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'llmctl[onnx]')")
pytest.importorskip("onnxscript", reason="the onnx extra is not installed (pip install 'llmctl[onnx]')")


@pytest.fixture(scope="module")
def bert_run(tiny_models, tmp_path_factory):
    """(tmp, run, validation file, the int8 export's result) for one tiny BERT classifier."""
    tmp = tmp_path_factory.mktemp("int8")
    train = write_csv(tmp / "train.csv", keyword_sentiment_rows(96, seed=0))
    valid = write_csv(tmp / "valid.csv", keyword_sentiment_rows(40, seed=1))
    run = tmp / "run"
    recipe = write_recipe(tmp / "bert.yaml", tiny_models["bert"], train, valid, run,
                          train={"epochs": 4, "learning_rate": 5e-3, "save_every": 1000})
    trained = run_cli("finetune", str(recipe), env=ONE_THREAD)
    assert trained.exit_code == EXIT_OK, trained.stderr[-3000:]
    exported = run_cli("export", str(run), "--output", str(tmp / "int8"), "--format", "onnx", "--quantize", "int8",
                       "--max-drop", "accuracy=1", "--json", env=ONE_THREAD)
    assert exported.exit_code == EXIT_OK, exported.stderr[-3000:]
    return tmp, run, valid, exported


def predict(folder, inputs) -> list[dict]:
    predicted = run_cli("predict", str(folder), "--input", str(inputs), env=ONE_THREAD)
    assert predicted.exit_code == EXIT_OK, predicted.stderr[-3000:]
    return [json.loads(line) for line in predicted.stdout.splitlines()]


def test_int8_export_reports_the_change_and_predicts_what_it_reported(bert_run):
    tmp, run, valid, exported = bert_run
    out = tmp / "int8"
    q = exported.json()["quantization"]
    assert q["scheme"] == "int8" and q["samples"] == 40 and q["gate"] == {"passed": True, "max_drop": {"accuracy": 1.0}}
    assert q["quantized_bytes"] < q["fp32_bytes"]
    for name, change in q["change"].items():
        assert change == pytest.approx(q["quantized"][name] - q["fp32"][name])
    # said on stderr next to the fp32 figure
    acc = q["quantized"]["accuracy"]
    assert (f"int8: accuracy {acc:.4f} (fp32 export {q['fp32']['accuracy']:.4f}, "
            f"change {q['change']['accuracy']:+.4f}) on 40 validation rows") in exported.stderr
    # recorded in the folder's metadata, export.json and the card
    assert json.loads((out / "llmctl.json").read_text())["quantization"] == q
    assert json.loads((out / "export.json").read_text())["quantization"] == q
    card = (out / "README.md").read_text()
    assert "Quantised to int8" in card and "| accuracy |" in card

    # the plain fp32 export of the same run scores what the int8 export reported for fp32
    fp32 = tmp / "fp32"
    assert run_cli("export", str(run), "--output", str(fp32), "--format", "onnx", env=ONE_THREAD).exit_code == EXIT_OK
    scored = run_cli("eval", str(out), "--json", env=ONE_THREAD)  # eval runs the int8 folder like any export
    assert scored.exit_code == EXIT_OK, scored.stderr[-2000:]
    assert scored.json()["metrics"] == pytest.approx(q["quantized"], abs=1e-6)

    # predict on the validation rows: each folder's accuracy is what the export reported, so the
    # int8 predictions differ from the fp32 ones by at most the reported change (plus the rows
    # where both are wrong differently: none in a two-label task)
    truth = [row["label"] for row in keyword_sentiment_rows(40, seed=1)]
    labels = {name: [r["label"] for r in predict(folder, valid)] for name, folder in (("fp32", fp32), ("int8", out))}
    accuracy = {name: sum(str(a) == str(b) for a, b in zip(got, truth)) / len(truth) for name, got in labels.items()}
    assert accuracy["fp32"] == pytest.approx(q["fp32"]["accuracy"]) and accuracy["fp32"] > 0.6  # it learned
    assert accuracy["int8"] == pytest.approx(q["quantized"]["accuracy"])
    disagree = sum(a != b for a, b in zip(labels["fp32"], labels["int8"])) / len(truth)
    assert disagree >= abs(q["change"]["accuracy"]) - 1e-9


def test_max_drop_refuses_with_the_gate_code_and_leaves_no_folder(bert_run):
    tmp, run, _, exported = bert_run
    target = tmp / "refused"
    # a loss rise of 0 is exceeded unless int8 reproduces fp32's loss exactly
    assert exported.json()["quantization"]["change"]["loss"] != 0
    refused = run_cli("export", str(run), "--output", str(target), "--format", "onnx", "--quantize", "int8",
                      "--max-drop", "loss=0", env=ONE_THREAD)
    assert refused.exit_code == EXIT_GATE, refused.stderr[-2000:]
    line = error_lines(refused.stderr)[0]
    assert line.startswith("error: --quantize int8: the quantised model is worse than the fp32 export on") and "loss rose" in line
    assert not target.exists() and not list(tmp.glob(".refused.partial"))


@pytest.mark.parametrize("args, says", [
    (["--quantize", "int8"], "--quantize int8 quantises an ONNX graph, and this export is --format safetensors."),
    (["--format", "onnx", "--quantize", "int4"], "--quantize int4: export quantises to int8."),
    (["--max-drop", "accuracy=0.01"], "--max-drop gates the quantised export against the fp32 one, so it needs "
                                      "--quantize."),
])
def test_quantize_usage_errors_come_first(tmp_path, args, says):
    # the run does not even exist: the option is refused before anything is read or loaded
    refused = run_cli("export", str(tmp_path / "no-run"), "--output", str(tmp_path / "out"), *args)
    assert refused.exit_code == EXIT_USAGE
    assert error_lines(refused.stderr) == [refused.stderr.strip()]
    assert refused.stderr.startswith(f"error: {says}")
    assert not (tmp_path / "out").exists()


def test_the_summary_line_says_the_weights_are_int8(bert_run):
    tmp, run, _, _ = bert_run
    out = tmp / "int8-plain"
    exported = run_cli("export", str(run), "--output", str(out), "--format", "onnx", "--quantize", "int8",
                       env=ONE_THREAD)
    assert exported.exit_code == EXIT_OK, exported.stderr[-3000:]
    assert f"wrote {out} (onnx, int8 weights, float32 activations, full fine-tune," in exported.stderr
