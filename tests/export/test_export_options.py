"""`llmctl export --dtype` and ONNX export of a masked-LM run (issue 27 item 20), through the CLI on
the tiny BERT: a bf16 export holds bf16 weights (half the bytes) and still predicts; a masked-LM
run's ONNX graph fills masks as the run does."""

import json

import pytest

from helpers import ONE_THREAD, build_recipe, run_cli, sentiment_rows, tensors, write_csv, write_recipe
from llmctl.errors import EXIT_OK, EXIT_USAGE


def test_dtype_bf16_halves_the_weights_and_predicts(tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(8))
    run = tmp_path / "run"
    finetuned = run_cli("finetune", str(write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, None, run)),
                        env=ONE_THREAD)
    assert finetuned.exit_code == EXIT_OK, finetuned.stderr
    exported = run_cli("export", str(run), "--output", str(tmp_path / "bf16"), "--dtype", "bf16", "--json")
    assert exported.exit_code == EXIT_OK, exported.stderr
    assert exported.json()["dtype"] == "bfloat16"
    weights = tensors(tmp_path / "bf16" / "model.safetensors")
    assert {str(t.dtype) for t in weights.values()} == {"torch.bfloat16"}
    full = (run / "model" / "model.safetensors").stat().st_size
    assert (tmp_path / "bf16" / "model.safetensors").stat().st_size < 0.6 * full
    inputs = tmp_path / "in.txt"
    inputs.write_text("a great film\n")
    predicted = run_cli("predict", str(tmp_path / "bf16"), "--input", str(inputs), "--json")
    assert predicted.exit_code == EXIT_OK, predicted.stderr
    assert predicted.json()["predictions"][0]["label"] in ("0", "1")

    refused = run_cli("export", str(run), "--output", str(tmp_path / "onnx"), "--format", "onnx", "--dtype", "fp16")
    assert refused.exit_code == EXIT_USAGE and "an ONNX export computes in fp32" in refused.stderr
    assert not (tmp_path / "onnx").exists()


def test_masked_lm_run_exports_to_onnx_and_fills_the_same(tiny_models, tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'llmctl[onnx]')")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed (pip install 'llmctl[onnx]')")
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": "the movie was great ."}) + "\n" for _ in range(16)))
    run, out = tmp_path / "run", tmp_path / "onnx"
    recipe = build_recipe(tmp_path / "mlm.yaml", "masked-lm", tiny_models["bert"], run,
                          {"train": str(train), "validation": None, "line_by_line": True, "max_length": 16},
                          train={"max_steps": 2})
    assert run_cli("finetune", str(recipe), env=ONE_THREAD).exit_code == EXIT_OK
    exported = run_cli("export", str(run), "--output", str(out), "--format", "onnx", env=ONE_THREAD)
    assert exported.exit_code == EXIT_OK, exported.stderr[-2000:]
    assert "onnx check: onnxruntime matches PyTorch" in exported.stderr
    args = ["--fill-mask", "the movie was [MASK] .", "--top-k", "3", "--json"]
    from_run = run_cli("predict", str(run), *args, env=ONE_THREAD)
    from_onnx = run_cli("predict", str(out), *args, env=ONE_THREAD)
    assert from_onnx.exit_code == EXIT_OK, from_onnx.stderr
    a, b = from_run.json()["predictions"][0], from_onnx.json()["predictions"][0]
    assert [c["token"] for c in a["masks"][0]] == [c["token"] for c in b["masks"][0]]
    assert [c["score"] for c in b["masks"][0]] == pytest.approx([c["score"] for c in a["masks"][0]], abs=1e-5)
