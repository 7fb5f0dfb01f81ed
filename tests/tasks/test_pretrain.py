"""Pre-training from scratch (issue 28): a new model from `model.config`, a tokenizer trained on the
corpus (`model.tokenizer.train`), for each family: a GPT-2 decoder with a char tokenizer (causal-lm,
nanoGPT's shakespeare_char setting), BERT with WordPiece (masked-lm) and T5 with unigram pieces
(denoising). Each trained once per module on a small corpus the test writes; the tests read the runs
the way a user does: the loss falls, the run resumes exactly, the saved model/ loads with plain
transformers and its tokenizer round-trips the corpus, and the other commands work on the run."""

import json
import random

import pytest
import yaml

from helpers import ONE_THREAD, assert_same_weights, eval_log, rewind_to_checkpoint, run_cli

SUBJECTS = "the cat|a dog|my bird|the old man|a small child|the queen".split("|")
VERBS = "sees|likes|finds|follows|hears|wants".split("|")
OBJECTS = "the ball|a red apple|the green door|my hat|the river|a song".split("|")


def sentences(n: int, seed: int) -> str:
    rng = random.Random(seed)
    lines = [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}" for _ in range(n)]
    return "\n\n".join("\n".join(lines[i:i + 3]) for i in range(0, n, 3)) + "\n"


def write_pretrain_recipe(path, task, config, tokenizer, data, train, output_dir):
    recipe = {"task": task, "model": {"config": config, "tokenizer": tokenizer},
              "data": {"text_split": "paragraph"} | data,
              "train": {"batch_size": 8, "eval_batch_size": 16, "learning_rate": 1e-2, "precision": "fp32",
                        "logging_steps": 1, "warmup_steps": 2, "save_every": 20, "eval_every": 20,
                        "keep_checkpoints": 5} | train,
              "output_dir": str(output_dir)}
    path.write_text(f"# llmctl finetune {path}\n" + yaml.safe_dump(recipe, sort_keys=False))
    return path


GPT2 = {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 64,
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
BERT = {"model_type": "bert", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 2, "max_position_embeddings": 64, "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0}
T5 = {"model_type": "t5", "d_model": 32, "d_ff": 64, "num_layers": 2, "num_heads": 2, "d_kv": 16, "dropout_rate": 0.0}
FAMILIES = {
    "gpt2-char": ("causal-lm", GPT2, {"train": "char"},
                  {"packing": True, "eval_blocks": True, "max_length": 32}, "AutoModelForCausalLM"),
    "bert-wordpiece": ("masked-lm", BERT, {"train": "wordpiece", "vocab_size": 120},
                       {"max_length": 32}, "AutoModelForMaskedLM"),
    "t5-unigram": ("denoising", T5, {"train": "unigram", "vocab_size": 160},
                   {"max_length": 32}, "AutoModelForSeq2SeqLM"),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pretrain")
    (tmp / "train.txt").write_text(sentences(240, 0))
    (tmp / "val.txt").write_text(sentences(30, 1))
    return tmp


@pytest.fixture(scope="module")
def runs(corpus):
    """Each family trained once, 40 steps, a checkpoint at 20; and the char run once more (cache hit)."""
    env = ONE_THREAD | {"LLMCTL_CACHE_DIR": str(corpus / "cache")}
    done = {}
    for name, (task, config, tokenizer, data, _) in FAMILIES.items():
        recipe = write_pretrain_recipe(corpus / f"{name}.yaml", task, config, tokenizer,
                                       {"train": str(corpus / "train.txt"), "validation": str(corpus / "val.txt")} | data,
                                       {"max_steps": 40}, corpus / name)
        result = run_cli("finetune", str(recipe), "--json", env=env)
        assert result.exit_code == 0, result.stderr[-3000:]
        done[name] = (recipe, result)
    again = run_cli("finetune", str(done["gpt2-char"][0]), "--output-dir", str(corpus / "again"), "--json", env=env)
    assert again.exit_code == 0, again.stderr[-3000:]
    done["again"] = (done["gpt2-char"][0], again)
    return done


def train_losses(run_dir) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_loss_falls_well_below_its_start(runs, corpus, name):
    losses = train_losses(corpus / name)
    start, end = losses[0], min(sum(losses[-5:]) / 5, eval_log(corpus / name)[-1]["loss"])
    assert end < 0.7 * start, (start, end, losses)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_saved_model_loads_with_plain_transformers_and_round_trips_the_corpus(runs, corpus, name):
    import transformers

    model_dir = corpus / name / "model"
    model = getattr(transformers, FAMILIES[name][4]).from_pretrained(model_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    assert model.config.vocab_size == len(tokenizer)
    text = (corpus / "val.txt").read_text()
    for paragraph in text.split("\n\n"):
        ids = tokenizer(paragraph, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        decoded = tokenizer.decode(ids)
        assert (decoded == paragraph) if name != "bert-wordpiece" else (decoded.split() == paragraph.split())


def test_char_tokenizer_gives_one_token_per_character(runs, corpus):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(corpus / "gpt2-char" / "model")
    text = (corpus / "train.txt").read_text()
    assert len(tokenizer) == len(set(text)) + 2  # every character, plus <|endoftext|> and <|unk|>
    ids = tokenizer(text)["input_ids"]
    assert len(ids) == len(text)
    assert [tokenizer.convert_ids_to_tokens(i) for i in ids[:20]] == list(text[:20])


def test_char_run_reports_bits_per_character_and_the_trained_tokenizer(runs, corpus):
    _, result = runs["gpt2-char"]
    metrics = result.json()["metrics"]
    assert metrics["bits_per_character"] == pytest.approx(metrics["nats_per_character"] / 0.6931471805599453)
    assert metrics["bits_per_byte"] == pytest.approx(metrics["bits_per_character"])  # ASCII text
    assert f"trained on {corpus / 'train.txt'}" in result.stderr
    assert "tokenizer: char, " in result.stderr


def test_second_run_takes_the_tokenizer_from_the_cache(runs):
    _, result = runs["again"]
    assert "tokenizer: char, " in result.stderr and "from the cache" in result.stderr
    assert result.json()["metrics"] == runs["gpt2-char"][1].json()["metrics"]


@pytest.mark.parametrize("name", ["gpt2-char", "t5-unigram"])
def test_resume_is_exact(runs, corpus, name):
    recipe, _ = runs[name]
    resumed = rewind_to_checkpoint(corpus / name, corpus / name / "checkpoints" / "step-0000020",
                                   corpus / f"{name}-resumed")
    result = run_cli("finetune", str(recipe), "--output-dir", str(resumed), "--resume", "--json",
                     env=ONE_THREAD | {"LLMCTL_CACHE_DIR": str(corpus / "cache")})
    assert result.exit_code == 0, result.stderr[-3000:]
    assert result.json()["train"]["steps"] == 40
    assert_same_weights(corpus / name, resumed)
    assert eval_log(resumed)[-1] == eval_log(corpus / name)[-1]


def test_generate_samples_from_the_char_model(runs, corpus):
    result = run_cli("generate", str(corpus / "gpt2-char"), "the cat", "--temperature", "0.8", "--top-k", "5",
                     "--seed", "1", "--max-new-tokens", "20", "--json", env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    text = json.dumps(result.json())
    assert "the cat" in text


def test_eval_gates_on_bits_per_character(runs, corpus):
    bits = runs["gpt2-char"][1].json()["metrics"]["bits_per_character"]
    passed = run_cli("eval", str(corpus / "gpt2-char"), "--fail-over", f"bits_per_character={bits + 0.01}", "--json",
                     env=ONE_THREAD)
    assert passed.exit_code == 0, passed.stderr
    assert passed.json()["metrics"]["bits_per_character"] == pytest.approx(bits, rel=1e-4)
    failed = run_cli("eval", str(corpus / "gpt2-char"), "--fail-over", f"bits_per_character={bits - 0.01}",
                     env=ONE_THREAD)
    assert failed.exit_code == 4, failed.stderr
