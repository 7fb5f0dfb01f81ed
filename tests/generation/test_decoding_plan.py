"""`--precision auto` and the weights' layout are chosen by timing this device, not assumed: the
stats say what was chosen and from which timings, the timings are kept in $LLMCTL_CACHE_DIR and
read back, the choice follows them, and the layout (numpy's BLAS for one row included) changes no
greedy output."""

from __future__ import annotations

import json

from helpers import run_cli

PROMPT = "I really loved this film, but the acting was"


def generate(model, *args):
    result = run_cli("generate", str(model), PROMPT, "--max-new-tokens", "12", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return result.json()


def candidates(dtypes, batch=1):
    """What is timed: each dtype in both layouts, and for a decoding batch in fp32 numpy's BLAS too."""
    from llmctl.generation.blas import MAX_ROWS

    return {f"{d}/{layout}" for d in dtypes for layout in ("rows", "columns")} | (
        {"fp32/numpy"} if "fp32" in dtypes and batch <= MAX_ROWS else set())


def timings_file(cache):
    files = sorted((cache / "decoding").glob("*.json"))
    assert len(files) == 1, files
    return files[0]


def test_auto_precision_and_layout_follow_the_timings_of_this_device(tiny_models, tmp_path, monkeypatch):
    from llmctl.models.precision import cpu_supports_bf16

    monkeypatch.setenv("LLMCTL_CACHE_DIR", str(tmp_path / "cache"))
    first = generate(tiny_models["gpt2"])
    plan = first["stats"]["precision_plan"]
    dtypes = ["fp32", "bf16"] if cpu_supports_bf16() else ["fp32"]
    assert set(plan["step_ms"]) == candidates(dtypes)
    fastest = min(plan["step_ms"], key=plan["step_ms"].get)
    assert f"{plan['precision']}/{plan['layout']}" == fastest == f"{first['stats']['precision']}/{plan['layout']}"
    assert plan["chosen_by"] == ("measured" if len(dtypes) == 2 else "device") and plan["batch"] == 1

    # The timings are kept per device and model shape: a second run reads them, and follows them.
    path = timings_file(tmp_path / "cache")
    stored = json.loads(path.read_text())
    assert stored["step_ms"] == plan["step_ms"]
    for want in sorted(candidates(dtypes)):
        stored["step_ms"] = {k: (1.0 if k == want else 100.0) for k in stored["step_ms"]}
        path.write_text(json.dumps(stored))
        again = generate(tiny_models["gpt2"])["stats"]
        assert f"{again['precision']}/{again['precision_plan']['layout']}" == want
        assert again["precision_plan"]["step_ms"] == stored["step_ms"]
    assert timings_file(tmp_path / "cache") == path


def test_the_layout_changes_no_greedy_output_and_fp32_is_kept_when_asked(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCTL_CACHE_DIR", str(tmp_path / "cache"))
    for family in ("gpt2", "t5"):
        generate(tiny_models[family], "--precision", "fp32")  # times this model's shape once
        path = timings_file(tmp_path / "cache")
        answers = {}
        for layout in ("rows", "columns", "numpy"):
            stored = json.loads(path.read_text())
            assert set(stored["step_ms"]) == candidates(["fp32"])  # asked for fp32: no bf16 timed
            stored["step_ms"] = {k: (1.0 if k.endswith(layout) else 100.0) for k in stored["step_ms"]}
            path.write_text(json.dumps(stored))
            out = generate(tiny_models[family], "--precision", "fp32")
            plan = out["stats"]["precision_plan"]
            assert (out["stats"]["precision"], plan["layout"], plan["chosen_by"]) == ("fp32", layout, "requested")
            answers[layout] = out["results"][0]["completion"]
        assert answers["rows"] == answers["columns"] == answers["numpy"] and answers["rows"].strip(), answers
        path.unlink()


def test_the_stats_line_names_the_measured_choice(tiny_models, tmp_path, monkeypatch):
    from llmctl.models.precision import cpu_supports_bf16

    monkeypatch.setenv("LLMCTL_CACHE_DIR", str(tmp_path / "cache"))
    result = run_cli("generate", str(tiny_models["gpt2"]), PROMPT, "--max-new-tokens", "4")
    assert result.exit_code == 0, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("generated 4 tokens for 1 prompt(s)") and line.endswith(", cpu)"), line
    if cpu_supports_bf16():
        assert ", measured fastest here" in line, line


def test_numpy_rows_equal_torch_and_leave_the_threads_as_they_were(tiny_models):
    """The numpy route gives the Linear / Conv1D outputs PyTorch gives (to float rounding) for one
    row, a batch of rows and a short prompt, keeps PyTorch on one thread only while such steps run,
    gives a long input (a long prompt's prefill) back to PyTorch and its threads, and a generation
    ends with its threads back."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from llmctl.generation.blas import MAX_ROWS, threads_restored
    from llmctl.generation.tuning import lay_out

    threads = torch.get_num_threads()
    for family, auto in (("gpt2", AutoModelForCausalLM), ("t5", AutoModelForSeq2SeqLM)):
        model = auto.from_pretrained(tiny_models[family]).eval()
        layers = [m for m in model.modules() if type(m).__name__ in ("Linear", "Conv1D")]
        width = {id(m): m.weight.shape[0] if type(m).__name__ == "Conv1D" else m.in_features for m in layers}
        # Empty (PyTorch's path), one step, five rows' step, a 20-token prompt (numpy's side: at most MAX_ROWS).
        inputs = [{id(m): torch.randn(*shape, width[id(m)]) for m in layers} for shape in ((0, 1), (1, 1), (5, 1), (1, 20))]
        with torch.inference_mode():
            want = [{id(m): m(x[id(m)]) for m in layers} for x in inputs]
            assert lay_out(model, "numpy") == "numpy"
            with threads_restored():
                for x, expected in zip(inputs, want):
                    for m in layers:
                        got = m(x[id(m)])
                        assert got.shape == expected[id(m)].shape
                        torch.testing.assert_close(got, expected[id(m)], rtol=1e-5, atol=1e-5)  # summed in another order
                assert torch.get_num_threads() == 1
                m = layers[0]
                m(torch.randn(1, MAX_ROWS + 1, width[id(m)]))  # a long prompt: PyTorch's kernel, with its threads
                assert torch.get_num_threads() == threads
                m(inputs[0][id(m)])
            assert torch.get_num_threads() == threads
