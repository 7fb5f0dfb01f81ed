"""`--precision auto` and the weights' layout are chosen by timing this device, not assumed: the
stats say what was chosen and from which timings, the timings are kept in $LLMCTL_CACHE_DIR and
read back, the choice follows them, and the layout changes no greedy output."""

from __future__ import annotations

import json

from helpers import run_cli

PROMPT = "I really loved this film, but the acting was"


def generate(model, *args):
    result = run_cli("generate", str(model), PROMPT, "--max-new-tokens", "12", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return result.json()


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
    assert set(plan["step_ms"]) == {f"{d}/{layout}" for d in dtypes for layout in ("rows", "columns")}
    fastest = min(plan["step_ms"], key=plan["step_ms"].get)
    assert f"{plan['precision']}/{plan['layout']}" == fastest == f"{first['stats']['precision']}/{plan['layout']}"
    assert plan["chosen_by"] == ("measured" if len(dtypes) == 2 else "device") and plan["batch"] == 1

    # The timings are kept per device and model shape: a second run reads them, and follows them.
    path = timings_file(tmp_path / "cache")
    stored = json.loads(path.read_text())
    assert stored["step_ms"] == plan["step_ms"]
    for want in [f"{d}/{layout}" for d in dtypes for layout in ("rows", "columns")]:
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
        for layout in ("rows", "columns"):
            stored = json.loads(path.read_text())
            assert set(stored["step_ms"]) == {"fp32/rows", "fp32/columns"}  # asked for fp32: no bf16 timed
            stored["step_ms"] = {k: (1.0 if k.endswith(layout) else 100.0) for k in stored["step_ms"]}
            path.write_text(json.dumps(stored))
            out = generate(tiny_models[family], "--precision", "fp32")
            plan = out["stats"]["precision_plan"]
            assert (out["stats"]["precision"], plan["layout"], plan["chosen_by"]) == ("fp32", layout, "requested")
            answers[layout] = out["results"][0]["completion"]
        assert answers["rows"] == answers["columns"] and answers["rows"].strip(), answers
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
