"""Issue 25, items 1, 7, 8, 14 and 17: every command loads checkpoints through one gate that runs
no code a user did not allow, never prompts, refuses missing weights, a replaced LoRA base, a
model too big for this machine, and probes the Hub once.

Each case runs the real CLI on real files and checks the exit code, the one `error:` line, that
the hostile folder's Python never ran (its marker file), and that every file there before is
byte-identical after.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import ONE_THREAD, build_recipe, error_lines, run_cli, sentiment_rows, write_csv, write_recipe

from llmctl.errors import EXIT_MODEL, EXIT_OK

CUSTOM = "Set model.trust_remote_code: true in the recipe if you trust that code."
RANDOM = "they would start at random, so every score and prediction would be noise."
COMPLETE = "Use a complete checkpoint (every weight its config declares)."


def snapshot(*roots: Path) -> dict:
    return {p: p.read_bytes() for root in roots for p in sorted(Path(root).rglob("*")) if p.is_file()}


def hostile_copy(src: Path, dest: Path, auto_class: str, model_type: str | None = None) -> Path:
    """`src` with an auto_map naming a module whose import would write dest/MARKER; with a
    `model_type` transformers does not know, it would ask on stdin whether to run it."""
    shutil.copytree(src, dest)
    config = json.loads((dest / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "custom.Config", auto_class: "custom.Model"}
    config["model_type"] = model_type or config["model_type"]
    (dest / "config.json").write_text(json.dumps(config))
    (dest / "custom.py").write_text(f"open({str(dest / 'MARKER')!r}, 'w').write('ran')\n"
                                    "from transformers import PretrainedConfig as Config, PreTrainedModel as Model\n")
    return dest


def classifier(tiny_models, dest: Path) -> Path:
    """A plain save_pretrained sequence classifier (what eval / predict / export take)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(tiny_models["bert"], num_labels=2).save_pretrained(dest)
    AutoTokenizer.from_pretrained(tiny_models["bert"]).save_pretrained(dest)
    return dest


def drop_weights(model_dir: Path, part: str) -> None:
    """Remove every tensor whose name holds `part` (a whole block) from model.safetensors."""
    from safetensors.torch import load_file, save_file

    file = model_dir / "model.safetensors"
    tensors = {k: v for k, v in load_file(file).items() if part not in k}
    save_file(tensors, file, metadata={"format": "pt"})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    csv = write_csv(root / "valid.csv", sentiment_rows(8))
    jsonl = root / "in.jsonl"
    jsonl.write_text('{"sentence": "a great film"}\n')
    return root, csv, jsonl


def test_custom_code_never_runs_and_is_never_asked_about(tiny_models, data, tmp_path):
    """Item 1: a folder whose config.json has an auto_map is refused (exit 5, one line) by every
    command that loads it, with `y` waiting on stdin; its Python never runs."""
    root, csv, jsonl = data
    cls = hostile_copy(classifier(tiny_models, tmp_path / "plain"), tmp_path / "cls",
                       "AutoModelForSequenceClassification", model_type="hostile-bert")
    mlm = hostile_copy(tiny_models["bert"], tmp_path / "mlm", "AutoModelForMaskedLM")
    gpt = hostile_copy(tiny_models["gpt2"], tmp_path / "gpt", "AutoModelForCausalLM")
    recipe = write_recipe(tmp_path / "r.yaml", mlm, csv, None, tmp_path / "run")
    zero_shot = build_recipe(tmp_path / "zs.yaml", "classification", gpt, tmp_path / "zrun",
                             {"validation": str(csv), "text_columns": ["sentence"], "label_column": "label"},
                             zero_shot={"template": "{sentence} It was", "verbalizers": {"0": " bad", "1": " good"}})
    cases = {
        cls: [("predict", str(cls), "--input", str(jsonl)), ("eval", str(cls), "--data", str(csv)),
              ("export", str(cls), "--output", str(tmp_path / "exported"))],
        mlm: [("predict", str(mlm), "--fill-mask", "a [MASK] film"), ("finetune", str(recipe)),
              ("finetune", str(recipe), "--dry-run"), ("doctor", str(recipe))],
        gpt: [("generate", str(gpt), "hello", "--max-new-tokens", "2"), ("eval", str(gpt), "--recipe", str(zero_shot))],
    }
    before = snapshot(tmp_path, root)
    for folder, commands in cases.items():
        for args in commands:
            result = run_cli(*args, input="y\n", env=ONE_THREAD)
            assert result.exit_code == EXIT_MODEL, (args, result.stderr)
            assert error_lines(result.stderr) == [
                f"error: Model {folder} needs custom code: the auto_map in its config.json would run the Python "
                f"files in that folder, which llmctl does not do by default. {CUSTOM}"], (args, result.stderr)
            assert "[y/N]" not in result.stdout + result.stderr
            assert not (folder / "MARKER").exists(), args
    assert snapshot(tmp_path, root) == before
    assert not (tmp_path / "exported").exists() and not (tmp_path / "run").exists()


def missing_line(where: Path, first: list[str], more: int, hint: str) -> str:
    return f"error: {where} has no trained weights for {', '.join(first)} and {more} more: {RANDOM} {hint}"


def test_missing_weights_are_refused_by_every_command(tiny_models, data, tmp_path):
    """Item 7: a GPT-2 with a block removed from its safetensors, a classifier missing a layer, a
    GGUF with no tensors, and a config that declares 3 layers over weights for 2 (finetune)."""
    pytest.importorskip("gguf")
    from test_gguf import write_llama_gguf

    root, csv, jsonl = data
    gpt = tmp_path / "gpt"
    shutil.copytree(tiny_models["gpt2"], gpt)
    drop_weights(gpt, ".h.1.")
    cls = classifier(tiny_models, tmp_path / "cls")
    drop_weights(cls, ".layer.1.")
    deeper = tmp_path / "deeper"  # config.json: 3 layers; model.safetensors: 2
    shutil.copytree(tiny_models["gpt2"], deeper)
    config = json.loads((deeper / "config.json").read_text())
    (deeper / "config.json").write_text(json.dumps(config | {"n_layer": 3}))
    empty = write_llama_gguf(tiny_models["llama"], tmp_path / "empty.gguf", tensors=False)
    zero_shot = build_recipe(tmp_path / "zs.yaml", "classification", gpt, tmp_path / "zrun",
                             {"validation": str(csv), "text_columns": ["sentence"], "label_column": "label"},
                             zero_shot={"template": "{sentence} It was", "verbalizers": {"0": " bad", "1": " good"}})
    recipe = write_recipe(tmp_path / "r.yaml", deeper, csv, None, tmp_path / "run")
    trained = "Fine-tune it first (`llmctl finetune RECIPE --model {}`), then eval the run directory; to score a " \
              "generative model without training, use `llmctl eval MODEL --recipe` with a zero_shot section."
    gpt_block = ["transformer.h.1.attn.c_attn.bias", "transformer.h.1.attn.c_attn.weight",
                 "transformer.h.1.attn.c_proj.bias"]
    cls_layer = ["bert.encoder.layer.1.attention.output.LayerNorm.bias",
                 "bert.encoder.layer.1.attention.output.LayerNorm.weight",
                 "bert.encoder.layer.1.attention.output.dense.bias"]
    cases = [
        (("generate", str(gpt), "hello", "--max-new-tokens", "2"), missing_line(gpt, gpt_block, 9, COMPLETE)),
        (("eval", str(gpt), "--recipe", str(zero_shot), "--fail-under", "accuracy=0"),
         missing_line(gpt, gpt_block, 9, COMPLETE)),
        (("eval", str(cls), "--data", str(csv)), missing_line(cls, cls_layer, 13, trained.format(cls))),
        (("predict", str(cls), "--input", str(jsonl)), missing_line(cls, cls_layer, 13, trained.format(cls))),
        (("export", str(cls), "--output", str(tmp_path / "exported")), missing_line(cls, cls_layer, 13, trained.format(cls))),
        (("finetune", str(recipe)), missing_line(deeper, [k.replace(".1.", ".2.") for k in gpt_block], 9, COMPLETE)),
        (("generate", str(empty), "hello", "--max-new-tokens", "2"),
         missing_line(empty, ["lm_head.weight", "model.embed_tokens.weight", "model.layers.0.input_layernorm.weight"],
                      18, COMPLETE)),
    ]
    before = snapshot(tmp_path, root)
    for args, line in cases:
        result = run_cli(*args, env=ONE_THREAD)
        assert result.exit_code == EXIT_MODEL, (args, result.stderr)
        assert error_lines(result.stderr) == [line], args
    assert snapshot(tmp_path, root) == before
    assert not (tmp_path / "run").exists() and not (tmp_path / "exported").exists()


def test_a_replaced_lora_base_is_refused_wherever_it_loads(tiny_models, tmp_path):
    """Item 8: the base of a LoRA run replaced at the same path (same architecture, other weights):
    generate, eval, predict, export and --resume all refuse it, naming the base."""
    from safetensors.torch import load_file, save_file

    base = tmp_path / "base"
    shutil.copytree(tiny_models["llama"], base)
    rows = [{"text": f"the cat sat on the mat {i % 5}"} for i in range(16)]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "the cat"}) + "\n")
    recipe = build_recipe(tmp_path / "r.yaml", "causal-lm", base, tmp_path / "run",
                          {"train": str(train), "validation": str(train), "max_length": 16},
                          peft={"r": 4}, train={"epochs": 2, "save_every": 2, "keep_checkpoints": 10})
    trained = run_cli("finetune", str(recipe), env=ONE_THREAD)
    assert trained.exit_code == EXIT_OK, trained.stderr
    first = sorted((tmp_path / "run" / "checkpoints").iterdir())[0]
    from helpers import rewind_to_checkpoint

    stopped = rewind_to_checkpoint(tmp_path / "run", first, tmp_path / "stopped")
    recipe_resume = build_recipe(tmp_path / "r2.yaml", "causal-lm", base, stopped,
                                 {"train": str(train), "validation": str(train), "max_length": 16},
                                 peft={"r": 4}, train={"epochs": 2, "save_every": 2, "keep_checkpoints": 10})
    weights = load_file(base / "model.safetensors")
    save_file({k: v + 0.5 for k, v in weights.items()}, base / "model.safetensors", metadata={"format": "pt"})

    run, model = tmp_path / "run", tmp_path / "run" / "model"
    hint = (f"Put the original base model back at {base} (or point base_model_name_or_path in "
            "adapter_config.json at a copy of it).")
    line = (f"error: The base model {base} of adapter run {model} is not the one it was trained on (its weight "
            f"files differ from base_sha256 in llmctl.json); the adapter on it would give a wrong model. {hint}")
    cases = [(("generate", str(run), "the cat", "--max-new-tokens", "2"), line),
             (("eval", str(run)), line),
             (("predict", str(run), "--input", str(prompts)), line),
             (("export", str(run), "--output", str(tmp_path / "exported")), line),
             (("finetune", str(recipe_resume), "--resume"), line.replace(f"adapter run {model}", f"run {stopped}"))]
    before = snapshot(tmp_path)
    for args, expected in cases:
        result = run_cli(*args, env=ONE_THREAD)
        assert result.exit_code == EXIT_MODEL, (args, result.stderr)
        assert error_lines(result.stderr) == [expected], args
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "exported").exists()


def test_a_model_too_big_for_this_machine_is_refused_before_allocating(tiny_models, data, tmp_path):
    """Item 14: config.json with num_hidden_layers 100000, a small GGUF declaring 1,000,000 blocks:
    generate, finetune, --dry-run and doctor refuse from the header, in seconds and without memory."""
    pytest.importorskip("gguf")
    from test_gguf import write_llama_gguf

    root, csv, _ = data
    huge = tmp_path / "huge"
    shutil.copytree(tiny_models["gpt2"], huge)
    config = json.loads((huge / "config.json").read_text())
    (huge / "config.json").write_text(json.dumps(config | {"n_layer": 100000, "n_embd": 1024}))
    blocks = write_llama_gguf(tiny_models["llama"], tmp_path / "blocks.gguf", block_count=1_000_000,
                              embedding_length=4096, tensors=False)
    assert blocks.stat().st_size < 64_000
    recipe = write_recipe(tmp_path / "r.yaml", huge, csv, None, tmp_path / "run")
    gguf_recipe = write_recipe(tmp_path / "g.yaml", blocks, csv, None, tmp_path / "grun")
    cases = [(("generate", str(huge), "hello"), huge, 100000, "weights"),
             (("generate", str(blocks), "hello"), blocks, 1_000_000, "weights"),
             (("finetune", str(recipe)), huge, 100000, "weights, gradients and optimizer state"),
             (("finetune", str(recipe), "--dry-run"), huge, 100000, "weights, gradients and optimizer state"),
             (("doctor", str(recipe)), huge, 100000, "weights, gradients and optimizer state"),
             (("finetune", str(gguf_recipe), "--dry-run"), blocks, 1_000_000, "weights, gradients and optimizer state")]
    before = snapshot(tmp_path, root)
    for args, where, layers, what in cases:
        result = run_cli(*args, env=ONE_THREAD, timeout=300)
        assert result.exit_code == EXIT_MODEL, (args, result.stderr)
        [line] = error_lines(result.stderr)
        assert line.startswith(f"error: {where} declares about ") and f" parameters ({layers:,} layers), " in line, line
        assert f" GiB of {what}, more than the " in line and line.endswith(
            " GiB of memory available. Check the config (num_hidden_layers, hidden_size, vocab_size), or use a "
            "machine with more memory."), line
    assert snapshot(tmp_path, root) == before
    assert not (tmp_path / "run").exists() and not (tmp_path / "grun").exists()


def test_doctor_and_dry_run_fail_fast_on_a_missing_model(data, tmp_path):
    """Item 17: a model path that is neither a folder nor reachable on the Hub: one quick probe, exit 5
    in seconds (before: the libraries retried the Hub for ~50 s)."""
    root, csv, _ = data
    recipe = write_recipe(tmp_path / "r.yaml", Path("missing/model"), csv, None, tmp_path / "run")
    hub_down = {"HF_HUB_OFFLINE": None, "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens on port 9
    before = snapshot(tmp_path, root)
    for args in (("doctor", str(recipe)), ("finetune", str(recipe), "--dry-run")):
        result = run_cli(*args, env=hub_down, timeout=120)
        assert result.exit_code == EXIT_MODEL, result.stderr
        assert error_lines(result.stderr) == [
            "error: The Hugging Face Hub is unreachable, so model 'missing/model' cannot be downloaded. Use a local "
            "model directory (a save_pretrained folder or a run directory) instead, or set HF_HUB_OFFLINE=1 to use "
            "only what is already in the local cache."]
    assert snapshot(tmp_path, root) == before
