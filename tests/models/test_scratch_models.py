"""A model from a config (`model.config`) and a tokenizer trained on the corpus: every bad input is one
line, with the exit code the README's table gives, before any weight is allocated and with no run
directory left; the dry run shows the new model's parameters and the memory training it needs."""

import pytest
import yaml

from helpers import ONE_THREAD, error_lines, run_cli

GPT2 = {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 64}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scratch")
    (tmp / "train.txt").write_text("the cat sees the ball\nthe dog hears a song\n" * 20)
    (tmp / "val.txt").write_text("the cat hears a song\n")
    return tmp


def recipe(tmp, model: dict, task="causal-lm", data=None, name="r.yaml"):
    body = {"task": task, "model": model,
            "data": {"train": str(tmp / "train.txt"), "validation": str(tmp / "val.txt"), "max_length": 32} | (data or {}),
            "train": {"max_steps": 2, "batch_size": 4, "precision": "fp32"}, "output_dir": str(tmp / "out")}
    path = tmp / name
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def refused(tmp, model: dict, code: int, **kw) -> str:
    result = run_cli("finetune", str(recipe(tmp, model, **kw)), env=ONE_THREAD | {"LLMCTL_CACHE_DIR": str(tmp / "cache")})
    assert result.exit_code == code, result.stderr
    assert not (tmp / "out").exists()
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0] + "\n" + result.stderr


def test_unknown_model_type_names_the_known_ones(corpus):
    text = refused(corpus, {"config": GPT2 | {"model_type": "gtp2"}, "tokenizer": {"train": "char"}}, 2)
    assert "model_type 'gtp2' is not one llmctl builds from scratch; known: gpt2, llama, qwen2, mistral, bert, roberta, t5" in text
    assert "Did you mean 'gpt2'?" in text


def test_unknown_config_key_gets_a_did_you_mean(corpus):
    text = refused(corpus, {"config": GPT2 | {"n_layers": 4}, "tokenizer": {"train": "char"}}, 2)
    assert "model.config: 'n_layers' is not a gpt2 config key" in text and "Did you mean 'n_layer'?" in text


def test_max_length_past_the_configs_positions(corpus):
    text = refused(corpus, {"config": GPT2, "tokenizer": {"train": "char"}}, 2, data={"max_length": 128})
    assert "data.max_length 128 is more than model a new gpt2 (model.config) can take (64 positions)" in text


def test_vocab_size_disagreeing_with_the_tokenizer(corpus):
    text = refused(corpus, {"config": GPT2 | {"vocab_size": 500}, "tokenizer": {"train": "bpe", "vocab_size": 400}}, 2)
    assert "model.config.vocab_size 500 and model.tokenizer.vocab_size 400 disagree" in text


def test_tokenizer_train_with_a_pretrained_model(corpus):
    text = refused(corpus, {"name_or_path": "gpt2", "tokenizer": {"train": "bpe", "vocab_size": 400}}, 2)
    assert "model.tokenizer.train makes a new vocabulary" in text and "use model.config" in text


def test_config_too_big_for_memory(corpus):
    text = refused(corpus, {"config": GPT2 | {"n_layer": 2_000_000}, "tokenizer": {"train": "char"}}, 2)
    assert "model.config (gpt2) declares about" in text and "GiB of weights, gradients and optimizer state" in text


def test_llama_family_unknown_key_and_missing_tokenizer(corpus):
    text = refused(corpus, {"config": {"model_type": "llama", "hidden_sise": 32}, "tokenizer": {"train": "char"}}, 2)
    assert "Did you mean 'hidden_size'?" in text
    text = refused(corpus, {"config": {"model_type": "llama"}}, 2)
    assert "needs model.tokenizer" in text


def test_binary_corpus_is_refused(corpus, tmp_path):
    (tmp_path / "train.txt").write_text("abc\x00def\nghi\n" * 5)
    (tmp_path / "val.txt").write_text("abc\n")
    text = refused(tmp_path, {"config": GPT2, "tokenizer": {"train": "char"}}, 3)
    assert "holds NUL bytes, so it looks binary" in text


def test_empty_corpus_is_refused(corpus, tmp_path):
    (tmp_path / "train.txt").write_text("\n   \n\n")
    (tmp_path / "val.txt").write_text("abc\n")
    refused(tmp_path, {"config": GPT2, "tokenizer": {"train": "char"}}, 3, data={"text_split": "document"})


def test_dry_run_reports_parameters_and_memory(corpus):
    path = recipe(corpus, {"config": GPT2, "tokenizer": {"train": "bpe", "vocab_size": 300}}, name="dry.yaml")
    env = ONE_THREAD | {"LLMCTL_CACHE_DIR": str(corpus / "cache")}
    result = run_cli("finetune", str(path), "--dry-run", "--json", env=env)
    assert result.exit_code == 0, result.stderr
    model = result.json()["model"]
    # GPT-2: token and position embeddings, 2 blocks of 12 * 32^2 + biases and norms, the final norm
    assert model["model_type"] == "gpt2" and model["vocab_size"] == 300
    assert model["parameters"] == 300 * 32 + 64 * 32 + 2 * (12 * 32 * 32 + 13 * 32) + 2 * 32
    assert model["bytes"] == 16 * model["parameters"]
    text = run_cli("finetune", str(path), "--dry-run", env=env).stdout
    assert f"model: a new gpt2, {model['parameters']:,} parameters" in text
    assert not (corpus / "out").exists()
