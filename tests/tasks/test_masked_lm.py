"""task: masked-lm and `predict --fill-mask`: the masking (rate, 80/10/10, whole words, per-epoch
draws reproducible from the seed), perplexity falling on repetitive text, exact resume, fill-mask
ranking first what a tiny model learned, the saved model fine-tuned for another task, and the
errors for checkpoints that cannot do it."""

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import (ONE_THREAD, assert_same_weights, build_recipe, error_lines, eval_log, rewind_to_checkpoint,
                     run_cli, tensors, weights, write_csv, write_jsonl)
from llmctl.errors import EXIT_MODEL
from llmctl.tasks import masking
from llmctl.tasks.masked_lm import MaskedLMData, MaskedLMTask

# Every token is as frequent as every other ("the" aside): ranking the right word first at each
# position takes what the model learned about positions and neighbours.
LINE = "the movie was great ."


def corpus(copies: int) -> list[dict]:
    return [{"text": LINE}] * copies


# -- the masking function -----------------------------------------------------------
def test_masking_rate_and_80_10_10_split_on_200k_tokens():
    special_ids, mask_id, vocab = (0, 1, 2, 3, 4), 4, 1000
    rng = np.random.default_rng(7)
    rows = []
    for i in range(400):  # 400 rows of 500 tokens, [CLS] ... [SEP] as BERT writes them
        body = rng.integers(5, vocab, 498)
        rows.append({"tokens": np.concatenate([[2], body, [3]]), "index": i})
    masked = masking.mask_rows(rows, special_ids, mask_id, vocab, 0.15, masking.TRAIN_STREAM, seed=42, epoch=0)
    tokens = np.concatenate([r["tokens"] for r in rows])
    ids = np.concatenate([r["input_ids"] for r in masked])
    labels = np.concatenate([r["labels"] for r in masked])
    special = np.isin(tokens, special_ids)
    picked = labels != -100
    assert len(tokens) == 200_000
    assert not (picked & special).any()  # [CLS] / [SEP] are never picked
    assert (labels[picked] == tokens[picked]).all()  # the label is the original token
    assert (ids[~picked] == tokens[~picked]).all()  # nothing else changes
    assert abs(picked.sum() / (~special).sum() - 0.15) < 0.004  # ~5 standard deviations
    as_mask = (ids[picked] == mask_id).mean()
    unchanged = (ids[picked] == tokens[picked]).mean()
    randomised = 1 - as_mask - unchanged
    assert abs(as_mask - 0.8) < 0.012 and abs(randomised - 0.1) < 0.009 and abs(unchanged - 0.1) < 0.009
    # a random replacement is an ordinary token, never a special one
    replaced = ids[picked][(ids[picked] != mask_id) & (ids[picked] != tokens[picked])]
    assert len(replaced) > 2000 and not np.isin(replaced, special_ids).any()


def test_every_example_gets_a_mask_even_when_short():
    rows = [{"tokens": np.array([2, 10, 11, 3]), "index": i} for i in range(300)]
    masked = masking.mask_rows(rows, (0, 1, 2, 3, 4), 4, 50, 0.15, masking.TRAIN_STREAM, seed=1, epoch=0)
    assert all((r["labels"] != -100).sum() >= 1 for r in masked)  # else a batch could have no loss (nan)


@pytest.fixture(scope="module")
def bert_tokenizer(tiny_models):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_models["bert"])


def features_of(tmp_path, tokenizer, texts, **data):
    cfg = MaskedLMData(train=str(write_jsonl(tmp_path / "t.jsonl", [{"text": t} for t in texts])), validation=None,
                       **data)
    task = MaskedLMTask(cfg)
    return task, task.featurize(task.load_split("train", cfg.train), tokenizer)


def test_whole_word_masking_masks_every_piece_of_a_word(tmp_path, bert_tokenizer):
    # "unbelievably" is 7 WordPiece pieces in the tiny vocabulary, "wonderful" and "acting" one each
    # long rows: an example with nothing picked gets one word picked, which would lift the rate of short ones
    texts = [" ".join(["unbelievably wonderful acting , unbelievably clumsy pacing ."] * 4)] * 100
    task, features = features_of(tmp_path, bert_tokenizer, texts, whole_word_masking=True, line_by_line=True)
    batch = task.collate_for_training(features.rows(range(len(features))), bert_tokenizer, seed=3, epoch=0)
    words = bert_tokenizer(texts[0]).word_ids()
    picked = (batch["labels"] != -100).numpy()
    assert picked.shape[1] == len(words)
    pieces = [[p for p, w in enumerate(words) if w == word] for word in sorted({w for w in words if w is not None})]
    assert max(len(p) for p in pieces) == 7
    for positions in pieces:  # each word is picked whole or not at all, in every row
        assert (picked[:, positions].all(1) | ~picked[:, positions].any(1)).all()
    word_rate = np.mean([picked[:, p[0]].mean() for p in pieces])
    assert abs(word_rate - 0.15) < 0.03  # words, not pieces, are drawn at 15%
    long_word = picked[:, pieces[0][0]]
    assert 0.05 < long_word.mean() < 0.3  # the 7-piece word is picked like any other word


def test_masks_are_redrawn_each_epoch_and_reproducible_from_the_seed(tmp_path, bert_tokenizer):
    texts = [LINE, "alice works in paris .", "bob sold his old car ."] * 50
    task, features = features_of(tmp_path, bert_tokenizer, texts, max_length=16)  # grouped into 16-token blocks
    assert len(features) < len(texts) and max(features.lengths) == 16
    everything = range(len(features))

    def labels(seed, epoch, rows=everything):
        return task.collate_for_training(features.rows(rows), bert_tokenizer, seed, epoch)["labels"]

    first = labels(42, 0)
    assert (labels(42, 0) == first).all()  # the same (seed, epoch): the same masks
    assert not (labels(42, 1) == first).all()  # a new epoch draws new masks
    assert not (labels(43, 0) == first).all()  # so does another seed
    # An example's masks do not depend on its batch (order, neighbours, which process takes it).
    assert (labels(42, 0, [5, 3]) == first[[5, 3]]).all()
    # Evaluation masks are the same at every evaluation.
    evaluation = task.collate(features.rows(everything), bert_tokenizer)["labels"]
    assert (task.collate(features.rows(everything), bert_tokenizer)["labels"] == evaluation).all()


# -- through the CLI ----------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tiny_models, tmp_path_factory):
    """One masked-lm run on one line repeated: 8 epochs of 5 steps, a checkpoint every 4 steps."""
    tmp = tmp_path_factory.mktemp("mlm")
    train = write_jsonl(tmp / "train.jsonl", corpus(80))
    valid = write_jsonl(tmp / "valid.jsonl", corpus(8))
    recipe = build_recipe(tmp / "mlm.yaml", "masked-lm", tiny_models["bert"], tmp / "run",
                          {"train": str(train), "validation": str(valid), "line_by_line": True, "max_length": 16},
                          train={"epochs": 8, "batch_size": 16, "learning_rate": 1e-2, "eval_every": 10,
                                 "save_every": 4, "keep_checkpoints": 20, "logging_steps": 10})
    result = run_cli("finetune", str(recipe), "--json", env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    return tmp, recipe, result.json()


def test_perplexity_falls(trained):
    tmp, _, result = trained
    log = eval_log(tmp / "run")
    assert [e["step"] for e in log] == [10, 20, 30, 40]
    perplexities = [e["perplexity"] for e in log]
    assert perplexities == sorted(perplexities, reverse=True) and perplexities[-1] < perplexities[0] / 3, perplexities
    assert result["metrics"]["perplexity"] == pytest.approx(perplexities[-1])


def test_fill_mask_ranks_first_what_the_model_learned(trained):
    tmp, _, _ = trained
    texts = ["the movie was [MASK] .", "the [MASK] was great .", "the [MASK] was [MASK] ."]
    args = [a for text in texts for a in ("--fill-mask", text)]
    result = run_cli("predict", str(tmp / "run"), *args, "--top-k", "3", "--json", env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    predictions = result.json()["predictions"]
    assert [p["text"] for p in predictions] == texts
    best = [[candidates[0]["token"] for candidates in p["masks"]] for p in predictions]
    assert best == [["great"], ["movie"], ["movie", "great"]]  # one list of candidates per mask, in order
    for candidates in (c for p in predictions for c in p["masks"]):
        assert len(candidates) == 3 and candidates[0]["score"] > candidates[1]["score"] >= candidates[2]["score"] > 0
    assert [p["filled"] for p in predictions] == ["the movie was great."] * 3  # as the tokenizer decodes it


def test_a_masked_lm_run_fills_input_rows(trained, tmp_path):
    tmp, _, _ = trained
    rows = tmp_path / "masked.txt"
    rows.write_text("the movie was [MASK] .\n\n[MASK] movie was great .\n")
    result = run_cli("predict", str(tmp / "run"), "--input", str(rows), "--json", env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    predictions = result.json()["predictions"]
    assert [p["line"] for p in predictions] == [1, 3]
    assert [[c["token"] for c in p["masks"][0]][:1] for p in predictions] == [["great"], ["the"]]
    assert all(len(p["masks"][0]) == 5 for p in predictions)  # data.top_k's default


def test_resume_is_exact_masks_included(trained):
    tmp, recipe, _ = trained
    # step 12 is mid-way through the third epoch (5 steps each): its last steps draw epoch 2's masks
    resumed = rewind_to_checkpoint(tmp / "run", tmp / "run" / "checkpoints" / "step-0000012", tmp / "resumed")
    result = run_cli("finetune", str(recipe), "--output-dir", str(resumed), "--resume", "--json", env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    assert result.json()["train"]["steps"] == 40
    assert_same_weights(tmp / "run", resumed)
    assert eval_log(resumed)[-1] == eval_log(tmp / "run")[-1]


def test_saved_model_fine_tunes_for_another_task(trained, tiny_models, tmp_path):
    tmp, _, _ = trained
    rows = [{"sentence": "the movie was great .", "label": 1}, {"sentence": "the movie was awful .", "label": 0}] * 8
    train = write_csv(tmp_path / "cls.csv", rows)
    recipe = build_recipe(tmp_path / "cls.yaml", "classification", tmp / "run" / "model", tmp_path / "cls",
                          {"train": str(train), "validation": str(train), "text_columns": ["sentence"],
                           "label_column": "label", "max_length": 16})
    result = run_cli("finetune", str(recipe), "--json", env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    assert "accuracy" in result.json()["metrics"]
    # The classifier's encoder started from the masked-lm run, not from the checkpoint that run began with.
    key = "bert.encoder.layer.1.attention.self.query.weight"
    classifier = weights(tmp_path / "cls")[key]
    distance = {name: float((classifier - start[key]).norm())
                for name, start in (("masked-lm run", weights(tmp / "run")),
                                    ("its start", tensors(tiny_models["bert"] / "model.safetensors")))}
    assert distance["masked-lm run"] < distance["its start"] / 2, distance


def headless_copy(bert: Path, dest: Path) -> Path:
    """The fixture saved as a bare BertModel, as sentence-transformers checkpoints (MiniLM) are."""
    from transformers import AutoTokenizer, BertModel

    BertModel.from_pretrained(bert).save_pretrained(dest)
    AutoTokenizer.from_pretrained(bert).save_pretrained(dest)
    return dest


def test_checkpoint_without_mlm_head_trains_one_but_cannot_fill_masks(tiny_models, tmp_path):
    headless = headless_copy(tiny_models["bert"], tmp_path / "minilm-like")
    train = write_jsonl(tmp_path / "train.jsonl", corpus(4))
    recipe = build_recipe(tmp_path / "mlm.yaml", "masked-lm", headless, tmp_path / "run",
                          {"train": str(train), "validation": None, "whole_word_masking": True},
                          train={"max_steps": 2})
    result = run_cli("finetune", str(recipe), env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "without a masked-LM head" in line]
    assert said == [f"model {headless} was saved without a masked-LM head (BertModel); masked-lm starts one at "
                    "random and trains it with the rest."]
    assert json.loads((tmp_path / "run" / "model" / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]

    refused = run_cli("predict", str(headless), "--fill-mask", "the movie was [MASK] .")
    assert refused.exit_code == EXIT_MODEL
    assert error_lines(refused.stderr) == [
        f"error: {headless} has no masked-LM head (BertModel), so it cannot fill masks. Use a checkpoint saved "
        "with one (e.g. BertForMaskedLM), or train one with task: masked-lm."]


def test_tokenizer_without_mask_token_is_refused_before_training(tiny_models, tmp_path):
    import shutil

    model = shutil.copytree(tiny_models["bert"], tmp_path / "no-mask")
    config = json.loads((model / "tokenizer_config.json").read_text())
    (model / "tokenizer_config.json").write_text(json.dumps(config | {"mask_token": None}))
    train = write_jsonl(tmp_path / "train.jsonl", corpus(2))
    recipe = build_recipe(tmp_path / "mlm.yaml", "masked-lm", model, tmp_path / "run",
                          {"train": str(train), "validation": None})
    result = run_cli("finetune", str(recipe), env=ONE_THREAD)
    assert result.exit_code == EXIT_MODEL
    assert error_lines(result.stderr) == [
        f"error: The tokenizer of '{model}' has no mask token, which masked-LM training and fill-mask need. Use a "
        "BERT-family checkpoint (BERT, RoBERTa, DistilBERT, MiniLM, ...) whose tokenizer has one."]
    assert not (tmp_path / "run").exists()  # refused before the run directory was made


def test_lora_masked_lm_run_fills_masks_from_its_adapter(tiny_models, tmp_path):
    """LoRA on masked-lm: the run saves an adapter, and fill-mask loads it over the base."""
    train = write_jsonl(tmp_path / "train.jsonl", corpus(40))
    recipe = build_recipe(tmp_path / "lora.yaml", "masked-lm", tiny_models["bert"], tmp_path / "run",
                          {"train": str(train), "validation": None, "line_by_line": True, "max_length": 16},
                          train={"epochs": 2, "batch_size": 16, "learning_rate": 1e-2}, peft={"method": "lora", "r": 4})
    result = run_cli("finetune", str(recipe), env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "run" / "model" / "adapter_config.json").is_file()
    filled = run_cli("predict", str(tmp_path / "run"), "--fill-mask", "the movie was [MASK] .", "--json", env=ONE_THREAD)
    assert filled.exit_code == 0, filled.stderr
    assert len(filled.json()["predictions"][0]["masks"][0]) == 5
