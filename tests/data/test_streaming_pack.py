"""Causal-LM training files larger than one chunk: read and tokenized a chunk at a time into flat
arrays, packed across chunk boundaries, giving exactly the features of the whole-file read; and a
CLI finetune on such a file that trains, then trains again from the feature cache."""

import re
import tracemalloc

import numpy as np
import pytest
import yaml

from helpers import finetune_twice, run_cli, write_jsonl
from llmctl.console import tell
from llmctl.errors import EXIT_DATA

WORDS = "the a film movie was great dull and not very truly awful good plot acting story".split()


def corpus(n: int, seed: int = 0, empty_every: int | None = None) -> list[dict]:
    """Rows of 1-30 words (a few blank with `empty_every`), as prompt/completion pairs too."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 31))))
        if empty_every and i % empty_every == 3:
            text = "  "
        rows.append({"text": text, "prompt": f"Q{i}:", "completion": " " + text})
    return rows


def write_csv(path, rows):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def gpt2_tokenizer(tiny_models):
    from llmctl.config.schema import ModelConfig
    from llmctl.models.load import load_tokenizer

    return load_tokenizer(ModelConfig(name_or_path=str(tiny_models["gpt2"])))


def featurize(path, tokenizer, **data):
    from llmctl.tasks.causal_lm import CausalLMData, CausalLMTask

    task = CausalLMTask(CausalLMData(train=str(path), validation=None, **data))
    split = tell(task.load_split("train", str(path)))  # shows the split's notes, as finetune does
    return split, task.featurize(split, tokenizer)


CASES = {
    "packed text": dict(packing=True, max_length=16),
    "packed pairs": dict(packing=True, max_length=16, prompt_column="prompt", completion_column="completion"),
    "unpacked text": dict(max_length=12),
    "unpacked pairs, skip_empty": dict(max_length=12, prompt_column="prompt", completion_column="completion",
                                       skip_empty=True),
    "packed text, skip_empty": dict(packing=True, max_length=16, skip_empty=True),
}


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
@pytest.mark.parametrize("case", list(CASES))
def test_streamed_features_equal_the_whole_file_read(case, suffix, tmp_path, gpt2_tokenizer, monkeypatch, capsys):
    from llmctl.data.store import Ragged, to_columnar
    from llmctl.tasks import causal_lm_file
    from llmctl.tasks.causal_lm import LMSplit
    from llmctl.tasks.causal_lm_file import LMFileSplit

    data = CASES[case]
    rows = corpus(53, empty_every=10 if data.get("skip_empty") else None)
    path = (write_jsonl if suffix == ".jsonl" else write_csv)(tmp_path / f"train{suffix}", rows)
    monkeypatch.setattr(causal_lm_file, "CHUNK_ROWS", 7)  # 53 rows: 8 chunks, blocks straddle them
    streamed_split, streamed = featurize(path, gpt2_tokenizer, **data)
    streamed_note = capsys.readouterr().err
    monkeypatch.setattr(causal_lm_file, "CHUNK_ROWS", 10_000)  # one chunk: the file is read whole
    whole_split, whole = featurize(path, gpt2_tokenizer, **data)
    assert isinstance(streamed_split, LMFileSplit) and isinstance(whole_split, LMSplit)
    assert len(streamed_split) == len(whole_split)
    assert capsys.readouterr().err == streamed_note  # the same "skipped N empty row(s)" note, or none

    # Packed blocks also carry where their examples start, so the collator keeps them apart.
    expected = {"input_ids", "labels"} | ({"example_starts"} if data.get("packing") else set())
    assert set(streamed.columns) == set(whole.columns) == expected
    for name in expected:
        column = streamed.columns[name]
        assert isinstance(column, Ragged)
        assert [r.tolist() for r in column] == whole.columns[name]
        assert column.values.dtype == to_columnar(whole.columns[name]).values.dtype
    assert list(streamed.lengths) == whole.lengths
    if data.get("packing"):
        assert all(n == data["max_length"] for n in streamed.lengths[:-1])
    assert streamed.tokenizer is gpt2_tokenizer  # predictions decode with it


@pytest.mark.parametrize("text_split", ["line", "paragraph"])
def test_a_text_file_streams_to_the_whole_read_features(text_split, tmp_path, gpt2_tokenizer, monkeypatch):
    """.txt (here a gzip one and a glob of two) streams like the tables: lines or paragraphs,
    7 at a time, give exactly the whole read's packed blocks, and row numbers name file:line."""
    import gzip

    from llmctl.data.sources import row_location
    from llmctl.tasks import causal_lm_file
    from llmctl.tasks.causal_lm import LMSplit
    from llmctl.tasks.causal_lm_file import LMFileSplit

    texts = [r["text"] for r in corpus(40, seed=4)]
    # paragraphs of 1-3 lines, blank lines between them (and two at one place)
    lines = [t + ("\n" if i % 3 == 2 else "") + ("\n" if i == 10 else "") for i, t in enumerate(texts)]
    (tmp_path / "a.txt").write_text("\n".join(lines[:25]) + "\n")
    with gzip.open(tmp_path / "b.txt.gz", "wt") as handle:
        handle.write("\n".join(lines[25:]) + "\n")
    spec = tmp_path / "*.txt*"
    data = dict(packing=True, max_length=16, text_split=text_split)
    monkeypatch.setattr(causal_lm_file, "CHUNK_ROWS", 7)
    streamed_split, streamed = featurize(spec, gpt2_tokenizer, **data)
    monkeypatch.setattr(causal_lm_file, "CHUNK_ROWS", 10_000)
    whole_split, whole = featurize(spec, gpt2_tokenizer, **data)
    assert isinstance(streamed_split, LMFileSplit) and isinstance(whole_split, LMSplit)
    rows = len(texts) if text_split == "line" else len(whole_split)
    assert len(streamed_split) == len(whole_split) == rows and (text_split == "line" or rows < len(texts))
    for name in ("input_ids", "labels", "example_starts"):
        assert [r.tolist() for r in streamed.columns[name]] == whole.columns[name]
    monkeypatch.setattr(causal_lm_file, "CHUNK_ROWS", 7)
    list(causal_lm_file.read_chunks(spec, "data.train", streamed_split_cfg(text_split), None))  # records rows' lines
    if text_split == "line":
        line = (tmp_path / "a.txt").read_text().splitlines().index(texts[12]) + 1  # blank lines above it count
        assert row_location(str(spec), 12, True) == f"{tmp_path / 'a.txt'}:{line}" and line > 13


def test_a_corrupt_compressed_text_file_is_one_line_while_streaming(tmp_path, gpt2_tokenizer, monkeypatch):
    import gzip

    from llmctl.errors import DataError
    from llmctl.tasks import causal_lm_file

    whole = gzip.compress("".join(r["text"] + "\n" for r in corpus(400, seed=5)).encode())
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(whole[: len(whole) * 2 // 3])  # a download that stopped part-way
    monkeypatch.setattr(causal_lm_file, "CHUNK_ROWS", 7)
    with pytest.raises(DataError) as error:
        featurize(path, gpt2_tokenizer, packing=True, max_length=16)
    assert f"{path} is not a readable gzip file" in str(error.value)


def streamed_split_cfg(text_split):
    from llmctl.tasks.causal_lm import CausalLMData

    return CausalLMData(train="x.txt", validation=None, text_split=text_split)


def test_streamed_store_is_flat_token_arrays(tmp_path, gpt2_tokenizer, monkeypatch):
    """The packed ids of a 20,000-row file are one uint16 array (2 bytes a token) cut by int64 block
    offsets, and tokenizing it never held the token stream as Python objects: the heap peak is
    below what a Python list of the stream would take for its pointers alone (8 bytes a token)."""
    from llmctl.data.store import Ragged
    from llmctl.tasks import causal_lm_file

    monkeypatch.setattr(causal_lm_file, "CHUNK_ROWS", 500)
    path = write_jsonl(tmp_path / "big.jsonl", [{"text": r["text"]} for r in corpus(20_000, seed=1)])
    tracemalloc.start()
    _, features = featurize(path, gpt2_tokenizer, packing=True, max_length=64)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    ids = features.columns["input_ids"]
    tokens = int(ids.offsets[-1])
    assert isinstance(ids, Ragged) and tokens > 200_000
    assert ids.values.dtype == np.uint16 and ids.values.nbytes == 2 * tokens
    assert ids.offsets.dtype == np.int64 and len(ids) == -(-tokens // 64) == len(features)
    assert features.columns["labels"] is ids  # plain text: the labels are the ids, not a copy
    assert peak < 8 * tokens, (peak, tokens)


def test_streamed_file_errors_name_the_row(tmp_path, gpt2_tokenizer, monkeypatch):
    """Checked chunk by chunk, a large file fails as the whole-file read does: the column with the
    file's columns, the first empty row by its line."""
    from llmctl.errors import DataError
    from llmctl.tasks import causal_lm_file

    monkeypatch.setattr(causal_lm_file, "CHUNK_ROWS", 7)
    rows = [{"text": r["text"]} for r in corpus(30)]
    rows[23]["text"] = ""
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:24: column 'text' is empty\. Fill in or remove"):
        featurize(path, gpt2_tokenizer)
    with pytest.raises(DataError, match="data.text_column: column 'body' is not in .*; its columns are: text"):
        featurize(path, gpt2_tokenizer, text_column="body")
    (tmp_path / "bad.jsonl").write_text(path.read_text() + "{not json\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(tmp_path / 'bad.jsonl'))}:31:2: invalid JSON"):
        featurize(tmp_path / "bad.jsonl", gpt2_tokenizer, skip_empty=True)


def test_cli_trains_on_a_file_larger_than_a_chunk_then_from_the_cache(tiny_models, tmp_path):
    """Through the real CLI at the real chunk size: the file streams (more rows than CHUNK_ROWS),
    packs, trains with a reported loss; the second run takes the features from the cache and
    trains the very same model."""
    from llmctl.tasks.causal_lm_file import CHUNK_ROWS

    rows = [{"text": r["text"]} for r in corpus(CHUNK_ROWS + 500, seed=2)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    valid = write_jsonl(tmp_path / "valid.jsonl", rows[:16])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "causal-lm", "model": {"name_or_path": str(tiny_models["gpt2"])},
        "data": {"train": str(train), "validation": str(valid), "packing": True, "max_length": 64},
        "train": {"max_steps": 3, "batch_size": 8, "eval_batch_size": 8, "learning_rate": 3e-3,
                  "precision": "fp32", "eval_every": 3, "save_every": 3}}))
    runs = finetune_twice(recipe, tmp_path, ("first", "second"))
    first, second = (r.json() for r in runs)
    assert first["data"]["cache"] == "miss" and second["data"]["cache"] == "hit"
    assert first["data"]["train_rows"] == second["data"]["train_rows"] > 100  # 64-token blocks of ~10k rows
    assert f"tokenizing the training data: {len(rows):,}/{len(rows):,} rows" in runs[0].stderr
    assert "tokenizing" not in runs[1].stderr
    assert first["train"]["steps"] == 3 and 0 < first["metrics"]["loss"] < 20
    assert second["metrics"] == first["metrics"]
    assert ((tmp_path / "first" / "model" / "model.safetensors").read_bytes()
            == (tmp_path / "second" / "model" / "model.safetensors").read_bytes())


def test_cli_refuses_a_bad_row_of_a_large_file_before_training(tiny_models, tmp_path):
    from llmctl.tasks.causal_lm_file import CHUNK_ROWS

    rows = [{"text": r["text"]} for r in corpus(CHUNK_ROWS + 10, seed=3)]
    rows[CHUNK_ROWS + 4]["text"] = None
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"task": "causal-lm", "model": {"name_or_path": str(tiny_models["gpt2"])},
                                      "data": {"train": str(train), "packing": True}}))
    result = run_cli("finetune", str(recipe), "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == EXIT_DATA
    assert f"{train}:{CHUNK_ROWS + 5}: column 'text' is empty" in result.stderr
    assert not (tmp_path / "run").exists()
