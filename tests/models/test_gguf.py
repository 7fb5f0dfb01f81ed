"""GGUF checkpoints: a real (tiny) GGUF file written from the tiny Llama fixture with the gguf
package's GGUFWriter, so transformers' real GGUF loader runs in the fast suite; and one slow
test on the real SmolLM2-135M-Instruct GGUF."""

import json
import os
import textwrap

import numpy as np
import pytest

from helpers import (ONE_THREAD, REPO, build_recipe, error_lines, keyword_sentiment_rows, run_cli, smollm2_gguf,
                     write_csv)
from llmctl.errors import EXIT_MODEL, EXIT_OK, EXIT_USAGE

gguf = pytest.importorskip("gguf", reason="the gguf package (pip install 'llmctl[gguf]') writes the test file")

PROMPTS = ["The movie was really great", "Alice Smith works as a teacher for Acme Corp in Paris."]


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf interleaves q / k rows for its rotary layout; the loader undoes it."""
    return weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def write_llama_gguf(model_dir, path, architecture: str = "llama", block_count: int | None = None,
                     embedding_length: int | None = None, tensors: bool = True):
    """The tiny Llama fixture as a GGUF file the way llama.cpp writes one: F32 tensors under
    llama.cpp names, the config as llama.* keys, the byte-level BPE (tokens, merges, specials)
    and the chat template as tokenizer.* keys. `block_count` / `embedding_length` override the
    header's sizes and `tensors=False` leaves the weights out (hostile files, test_trust_loading)."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = model.config
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny-llama")
    writer.add_block_count(block_count or config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(embedding_length or config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(config.hidden_size // heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    specials = set(tokenizer.all_special_tokens)
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_unk_token_id(tokenizer.unk_token_id)
    writer.add_add_bos_token(False)
    writer.add_chat_template(tokenizer.chat_template)

    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for key, tensor in model.state_dict().items() if tensors else ():
        weights = tensor.numpy()
        if key == "model.embed_tokens.weight":
            writer.add_tensor("token_embd.weight", weights)
        elif key == "model.norm.weight":
            writer.add_tensor("output_norm.weight", weights)
        elif key.startswith("model.layers."):
            layer, rest = key[len("model.layers."):].split(".", 1)
            part = names[rest.rsplit(".", 1)[0]]
            if part == "attn_q":
                weights = _permute(weights, heads)
            elif part == "attn_k":
                weights = _permute(weights, kv_heads)
            writer.add_tensor(f"blk.{layer}.{part}.weight", weights)
        # lm_head.weight is tied to the embeddings: llama.cpp omits output.weight then
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tiny_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf")
    return write_llama_gguf(tiny_models["llama"], folder / "tiny-llama.F32.gguf")


def test_gguf_loads_the_same_model_and_tokenizer(tiny_models, tiny_gguf):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmctl.config.schema import ModelConfig
    from llmctl.models.load import load_model, load_tokenizer

    source_tok = AutoTokenizer.from_pretrained(tiny_models["llama"])
    source = AutoModelForCausalLM.from_pretrained(tiny_models["llama"], dtype=torch.float32).eval()
    for cfg in (ModelConfig(name_or_path=str(tiny_gguf)),
                ModelConfig(name_or_path=str(tiny_gguf.parent), gguf_file=tiny_gguf.name)):
        tokenizer = load_tokenizer(cfg)
        assert tokenizer.chat_template == source_tok.chat_template
        assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|im_end|>"
        for text in PROMPTS:
            assert tokenizer(text)["input_ids"] == source_tok(text)["input_ids"]
        model = load_model(AutoModelForCausalLM, cfg, tokenizer).eval()
        assert getattr(model.config, "quantization_config", None) is None  # a plain model: it saves
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # still tied
        batch = source_tok(PROMPTS[1], return_tensors="pt")
        with torch.no_grad():
            assert torch.allclose(model(**batch).logits, source(**batch).logits, atol=1e-5)


def sentiment_pairs(tmp_path):
    rows = [{"prompt": f"Review: {r['sentence']}\nSentiment:", "completion": f" {r['label']}"}
            for r in keyword_sentiment_rows(24)]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def lm_recipe(tmp_path, model, run_dir, **model_keys):
    train = sentiment_pairs(tmp_path)
    recipe = build_recipe(tmp_path / "r.yaml", "causal-lm", model, run_dir,
                          {"train": str(train), "validation": str(train), "prompt_column": "prompt",
                           "completion_column": "completion", "max_length": 32, "max_new_tokens": 2},
                          train={"max_steps": 3, "eval_every": 3, "save_every": 3, "learning_rate": 3e-3})
    if model_keys:
        import yaml

        recipe_dict = yaml.safe_load(recipe.read_text())
        recipe_dict["model"].update(model_keys)
        recipe.write_text(recipe.read_text().splitlines()[0] + "\n" + yaml.safe_dump(recipe_dict, sort_keys=False))
    return recipe


def assert_plain_safetensors_run(run_dir):
    from transformers import AutoModelForCausalLM

    saved = sorted(p.name for p in (run_dir / "model").iterdir())
    assert "model.safetensors" in saved and not any(name.endswith(".gguf") for name in saved)
    model = AutoModelForCausalLM.from_pretrained(run_dir / "model")  # no gguf_file, no quantization
    assert getattr(model.config, "quantization_config", None) is None


def test_finetune_from_gguf_file_in_a_folder_saves_safetensors(tiny_gguf, tmp_path):
    run_dir = tmp_path / "run"
    recipe = lm_recipe(tmp_path, tiny_gguf.parent, run_dir, gguf_file=tiny_gguf.name)
    result = run_cli("finetune", str(recipe), "--json", env=ONE_THREAD)
    assert result.exit_code == EXIT_OK, result.stderr
    assert np.isfinite(result.json()["metrics"]["loss"])
    assert_plain_safetensors_run(run_dir)
    evaluated = run_cli("eval", str(run_dir), "--json", env=ONE_THREAD)
    assert evaluated.exit_code == EXIT_OK, evaluated.stderr
    assert evaluated.json()["metrics"]["loss"] == pytest.approx(result.json()["metrics"]["loss"], rel=1e-4)


def test_lora_on_a_gguf_base_reloads_from_the_file(tiny_gguf, tmp_path):
    """The adapter run names the .gguf file as its base, so eval and export load it back."""
    run_dir = tmp_path / "run"
    recipe = lm_recipe(tmp_path, tiny_gguf.parent, run_dir, gguf_file=tiny_gguf.name)
    result = run_cli("finetune", str(recipe), "--set", "peft={r: 4}", "--json", env=ONE_THREAD)
    assert result.exit_code == EXIT_OK, result.stderr
    # No raw library warning in the output (issue 27 item 14: peft's "base_model_name_or_path was renamed").
    assert "Warning" not in result.stderr and "warnings.warn(" not in result.stderr, result.stderr
    adapter = json.loads((run_dir / "model" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(tiny_gguf.resolve())
    # push --dry-run says the adapter names a local base nobody else can load, and how to set its Hub id (item 22)
    pushed = run_cli("push", str(run_dir), "--repo-id", "me/tiny-lora", "--dry-run", "--json")
    assert pushed.exit_code == EXIT_OK, pushed.stderr
    (warning,) = pushed.json()["warnings"]
    assert f"names the base model by a local path ({tiny_gguf.resolve()})" in warning
    assert "Set base_model_name_or_path there to the base's Hub id" in warning and warning in pushed.stderr
    evaluated = run_cli("eval", str(run_dir), "--json", env=ONE_THREAD)
    assert evaluated.exit_code == EXIT_OK, evaluated.stderr
    assert evaluated.json()["metrics"]["loss"] == pytest.approx(result.json()["metrics"]["loss"], rel=1e-4)
    exported = run_cli("export", str(run_dir), "--output", str(tmp_path / "merged"), env=ONE_THREAD)
    assert exported.exit_code == EXIT_OK, exported.stderr
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    # Issue 27 item 7: the GGUF base's digest is recorded, so `export --base` refuses other weights
    # (here the merged export: the adapter would be merged a second time).
    import hashlib

    recorded = json.loads((run_dir / "model" / "llmctl.json").read_text())["peft"]["base_sha256"]
    assert recorded == {tiny_gguf.name: hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()}
    again = run_cli("export", str(run_dir), "--base", str(tmp_path / "merged"), "--output", str(tmp_path / "twice"),
                    env=ONE_THREAD)
    assert again.exit_code == EXIT_USAGE, again.stderr
    assert "is not the base this adapter was trained on" in again.stderr and not (tmp_path / "twice").exists()


def test_finetune_model_flag_takes_a_gguf_path(tiny_gguf, tiny_models, tmp_path):
    run_dir = tmp_path / "run"
    recipe = lm_recipe(tmp_path, tiny_models["gpt2"], run_dir)
    result = run_cli("finetune", str(recipe), "--model", str(tiny_gguf), "--json", env=ONE_THREAD)
    assert result.exit_code == EXIT_OK, result.stderr
    assert_plain_safetensors_run(run_dir)
    assert tiny_gguf.is_file()  # the run's own input survives


def test_generate_and_zero_shot_read_a_gguf_path(tiny_gguf, tiny_models, tmp_path):
    args = ["--max-new-tokens", "5", "--precision", "fp32", "--json"]
    from_gguf = run_cli("generate", str(tiny_gguf), *PROMPTS, *args, env=ONE_THREAD)
    assert from_gguf.exit_code == EXIT_OK, from_gguf.stderr
    from_folder = run_cli("generate", str(tiny_models["llama"]), *PROMPTS, *args, env=ONE_THREAD)
    assert [r["completion"] for r in from_gguf.json()["results"]] == [r["completion"] for r in from_folder.json()["results"]]
    chat = run_cli("generate", str(tiny_gguf), "Where was Alice born?", "--chat", *args, env=ONE_THREAD)
    assert chat.exit_code == EXIT_OK, chat.stderr

    import yaml

    valid = write_csv(tmp_path / "valid.csv", keyword_sentiment_rows(8, seed=2))
    recipe = tmp_path / "zs.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "classification", "model": {"name_or_path": str(tiny_gguf)},
        "data": {"validation": str(valid), "text_columns": ["sentence"], "label_column": "label"},
        "zero_shot": {"template": "Review: {sentence}\nSentiment:",
                      "verbalizers": {"negative": " bad", "positive": " good"}}}))
    scores = [run_cli("eval", str(model), "--recipe", str(recipe), "--json", "--precision", "fp32", env=ONE_THREAD)
              for model in (tiny_gguf, tiny_models["llama"])]
    assert all(s.exit_code == EXIT_OK for s in scores), scores[0].stderr + scores[1].stderr
    assert scores[0].json()["metrics"]["accuracy"] == scores[1].json()["metrics"]["accuracy"]
    assert scores[0].json()["samples"] == 8


def test_unsupported_architecture_is_one_line(tiny_models, tmp_path):
    odd = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(odd), "rwkv6")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    for args in (("finetune", str(lm_recipe(tmp_path, odd, tmp_path / "run"))), ("generate", str(odd), "hello")):
        result = run_cli(*args)
        assert result.exit_code == EXIT_MODEL, result.stderr
        (line,) = error_lines(result.stderr)
        assert "GGUF architecture 'rwkv6' cannot be read by transformers" in line and "llama" in line
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_missing_or_misnamed_gguf_file_is_one_line(tiny_gguf, tmp_path):
    missing = run_cli("generate", str(tmp_path / "nope.gguf"), "hello")
    assert missing.exit_code == EXIT_MODEL
    assert error_lines(missing.stderr) == [f"error: GGUF file {tmp_path / 'nope.gguf'} does not exist. "
                                           "Check model.name_or_path (and model.gguf_file)."]
    # gguf_file names the file, so name_or_path must be its folder, not the file itself
    recipe = lm_recipe(tmp_path, tiny_gguf, tmp_path / "run", gguf_file=tiny_gguf.name)
    both = run_cli("finetune", str(recipe))
    assert both.exit_code == EXIT_MODEL
    (line,) = error_lines(both.stderr)
    assert "is a file; with model.gguf_file set it must be the folder" in line
    assert not (tmp_path / "run").exists()


def test_missing_gguf_package_names_the_install(tiny_gguf, tmp_path):
    blocked = tmp_path / "blocked"
    (blocked / "gguf").mkdir(parents=True)
    (blocked / "gguf" / "__init__.py").write_text("raise ImportError('No module named gguf')\n")
    result = run_cli("generate", str(tiny_gguf), "hello", env={"PYTHONPATH": f"{blocked}{os.pathsep}{REPO}"})
    assert result.exit_code == EXIT_MODEL, result.stderr
    (line,) = error_lines(result.stderr)
    assert "needs the gguf package" in line and "pip install gguf" in line and "llmctl[gguf]" in line


@pytest.mark.slow
def test_smollm2_gguf_answers_through_its_chat_template():
    result = run_cli("generate", str(smollm2_gguf()), "What is the capital of France?", "--chat",
                     "--max-new-tokens", "16", "--json")
    assert result.exit_code == EXIT_OK, result.stderr
    answer = result.json()["results"][0]["completion"]
    assert "Paris" in answer, textwrap.shorten(answer, 200)
