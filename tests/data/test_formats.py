"""Every file shape a split may have, through the one reader and the real CLI: .json holding a
document or JSON Lines, .txt corpora (lines or paragraphs), nested fields named with dots,
gzip / bz2 / xz / zstd files, globs and folders, and Hub revisions; each bad input a one-line
error naming the file (and line) with exit code 3."""

import bz2
import gzip
import json
import lzma
from pathlib import Path

import pytest

from helpers import ONE_THREAD, build_recipe, error_lines, run_cli, sentiment_rows
from llmctl.data.sources import data_format, read_table, row_location
from llmctl.errors import EXIT_DATA

COMPRESS = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}


def nested(rows):
    """WMT-style rows: the text and label inside a "review" object."""
    return [{"id": i, "review": {"text": r["sentence"], "label": r["label"]}} for i, r in enumerate(rows)]


def jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lstrip(".")
    path.write_bytes(COMPRESS[ext](text.encode()) if ext in COMPRESS else text.encode())
    return path


@pytest.fixture(scope="module")
def classified(tiny_models, tmp_path_factory):
    """One tiny BERT trained on a folder of gzip'd JSON-Lines .json parts with nested fields,
    validated on a .json document (a list) with the same nesting."""
    root = tmp_path_factory.mktemp("formats")
    rows = nested(sentiment_rows(24, string_labels=True))
    for k in range(3):
        write(root / "train" / f"part-{k}.json.gz", jsonl(rows[k * 8 : (k + 1) * 8]))
    write(root / "valid.json", json.dumps(nested(sentiment_rows(8, string_labels=True)), indent=1))
    recipe = build_recipe(root / "r.yaml", "classification", tiny_models["bert"], root / "run",
                          {"train": str(root / "train"), "validation": str(root / "valid.json"),
                           "text_columns": ["review.text"], "label_column": "review.label", "max_length": 16},
                          train={"epochs": 1})
    result = run_cli("finetune", str(recipe), "--json", env=ONE_THREAD)
    return root, result


def test_folder_of_compressed_json_lines_with_nested_fields_trains(classified):
    root, result = classified
    assert result.exit_code == 0, result.stderr
    out = result.json()
    assert out["train"]["samples"] == 24  # one epoch over the three parts
    assert {"accuracy", "loss"} <= set(out["metrics"])


def test_eval_reads_a_glob_of_compressed_json_lines(classified):
    root, _ = classified
    rows = nested(sentiment_rows(6, string_labels=True))
    write(root / "parts-b.json.xz", jsonl(rows[3:]))
    write(root / "parts-a.json.xz", jsonl(rows[:3]))
    result = run_cli("eval", str(root / "run"), "--data", str(root / "parts-*.json.xz"), "--json", env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    assert 0.0 <= result.json()["metrics"]["accuracy"] <= 1.0


def test_bad_rows_are_named_by_their_own_file_and_line(classified):
    root, _ = classified
    rows = nested(sentiment_rows(4, string_labels=True))
    write(root / "bad" / "a.jsonl", jsonl(rows))
    del rows[2]["review"]["text"]
    write(root / "bad" / "b.jsonl.gz", "\n" + jsonl(rows))  # a blank first line: row 2 is on line 4
    result = run_cli("eval", str(root / "run"), "--data", str(root / "bad" / "*.jsonl*"))
    assert result.exit_code == EXIT_DATA
    assert error_lines(result.stderr) == [f"error: {root / 'bad' / 'b.jsonl.gz'}:4: column 'review.text' is empty. "
                                          "Fill in or remove that row."]


def test_bad_inputs_each_one_line_exit_3(classified, tmp_path):
    from llmctl.errors import DataError
    from llmctl.tasks.classification import ClassificationTask
    from llmctl.tasks.classification_data import ClassificationData

    root, _ = classified
    pattern = str(tmp_path / "none-*.jsonl")
    result = run_cli("eval", str(root / "run"), "--data", pattern)
    assert result.exit_code == EXIT_DATA, result.stderr
    assert error_lines(result.stderr) == [f"error: data.eval: no file matches {pattern}. Check the pattern (relative "
                                          "to where you run llmctl) and that the files exist."]
    # The others raise the same DataError (exit code 3) from the same reader, before any model loads.
    corrupt = tmp_path / "train.jsonl.gz"
    corrupt.write_bytes(b"not gzip at all\n")
    text = write(tmp_path / "train.txt", "a great film\nan awful film\n")
    task = ClassificationTask(ClassificationData(text_columns=["review.text"], label_column="review.label"))
    cases = {
        str(corrupt): f"data.train: {corrupt} is not a readable gzip file (Not a gzipped file (b'no')).",
        str(text): (f"data.train: {text} is plain text (a 'text' column only); task 'classification' needs "
                    "a label (data.label_column: review.label) in every row."),
    }
    for spec, message in cases.items():
        with pytest.raises(DataError) as caught:
            task.load_split("train", spec)
        assert caught.value.exit_code == EXIT_DATA and str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize("text_split, rows", [("line", 5), ("paragraph", 3)])
def test_txt_corpus_trains_a_causal_lm(tiny_models, tmp_path, text_split, rows):
    corpus = write(tmp_path / "corpus.txt", "the cat sat on the mat\nthe dog sat too\n\n"
                                            "a bird sang\nin the tree\n\n\nthe end\n")
    recipe = build_recipe(tmp_path / "lm.yaml", "causal-lm", tiny_models["gpt2"], tmp_path / "run",
                          {"train": str(corpus), "validation": str(corpus), "max_length": 16,
                           "text_split": text_split, "packing": False},
                          train={"epochs": 1, "batch_size": 2, "eval_batch_size": 4})
    result = run_cli("finetune", str(recipe), "--json", env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    out = result.json()
    assert out["train"]["samples"] == rows and out["metrics"]["perplexity"] > 0


def test_json_document_and_json_lines_are_told_apart(tmp_path):
    rows = [{"text": "a", "label": 0}, {"text": "b", "label": 1}]
    shapes = {
        "lines.json": (jsonl(rows), "jsonl"),
        "lines.json.bz2": (jsonl(rows), "jsonl"),
        "one-line.json": (json.dumps(rows[0]) + "\n", "jsonl"),  # one row of JSON Lines
        "list.json": (json.dumps(rows, indent=2), "json"),
        "wrapped.json": (json.dumps({"version": "1", "data": rows}), "json"),  # one line, a wrapper
        "pretty-object.json": (json.dumps({"data": rows}, indent=2), "json"),
    }
    for name, (text, fmt) in shapes.items():
        path = write(tmp_path / name, text)
        assert data_format(path, "data.train") == fmt, name
        frame = read_table(path, "data.train")
        assert frame["text"].tolist() == [r["text"] for r in rows][: len(frame)] and len(frame) >= 1, name


def test_txt_rows_keep_their_line_numbers(tmp_path):
    path = write(tmp_path / "c.txt.gz", "one\n\ntwo\nthree\n\n\nfour\nfive\n")
    frame = read_table(Path(path), "data.train")
    assert frame["text"].tolist() == ["one", "two", "three", "four", "five"]
    assert [row_location(str(path), i) for i in (0, 1, 3)] == [f"{path}:1", f"{path}:3", f"{path}:7"]
    frame = read_table(Path(path), "data.train", text_split="paragraph")
    assert frame["text"].tolist() == ["one", "two\nthree", "four\nfive"]
    assert row_location(str(path), 2) == f"{path}:7"


def test_zstd_and_parquet_nested_fields(tmp_path):
    import pandas as pd
    import zstandard

    from llmctl.data.streams import iter_table

    rows = [{"translation": {"en": f"hello {i}", "ro": f"salut {i}"}} for i in range(5)]
    zst = tmp_path / "t.jsonl.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(jsonl(rows).encode()))
    assert read_table(zst, "data.train", nested=True)["translation.ro"].tolist() == [f"salut {i}" for i in range(5)]
    pd.DataFrame(rows).to_parquet(tmp_path / "t.parquet")
    names, chunks = iter_table(tmp_path / "t.parquet", "data.train", ["translation.en"], chunk_rows=2)
    assert "translation.en" in names
    assert [v for c in chunks for v in c["translation.en"]] == [f"hello {i}" for i in range(5)]
    zst.write_bytes(zst.read_bytes()[:-6])
    with pytest.raises(Exception, match="is not a readable zstd file"):
        read_table(zst, "data.train")
    # Several frames (`cat a.zst b.zst`, or zstd's own multi-frame output): every row, not the first frame's.
    compress = zstandard.ZstdCompressor().compress
    zst.write_bytes(compress(jsonl(rows[:2]).encode()) + compress(jsonl(rows[2:]).encode()))
    assert read_table(zst, "data.train", nested=True)["translation.ro"].tolist() == [f"salut {i}" for i in range(5)]


def test_cache_key_changes_with_any_file_of_a_glob(tmp_path):
    from llmctl.data.inputs import source_fingerprint

    write(tmp_path / "d" / "a.jsonl", jsonl([{"text": "a"}]))
    write(tmp_path / "d" / "b.jsonl", jsonl([{"text": "b"}]))
    before = source_fingerprint(str(tmp_path / "d" / "*.jsonl"))
    assert source_fingerprint(str(tmp_path / "d")) != source_fingerprint(str(tmp_path / "d" / "a.jsonl"))
    write(tmp_path / "d" / "b.jsonl", jsonl([{"text": "B"}]))
    assert source_fingerprint(str(tmp_path / "d" / "*.jsonl")) != before
    write(tmp_path / "d" / "c.jsonl", jsonl([{"text": "c"}]))
    assert len(source_fingerprint(str(tmp_path / "d"))["files"]) == 3


def test_revision_reaches_load_dataset(monkeypatch, tmp_path):
    """The Hub is unreachable here: the call load_dataset receives is what can be checked, and
    the offline failure names the revision."""
    import datasets

    from llmctl.data.sources import load_split

    seen = {}

    def fake_load_dataset(path, name=None, **kwargs):
        seen.update(kwargs, path=path, name=name)
        return datasets.Dataset.from_list([{"translation": {"en": "hi", "ro": "salut"}}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ds, where = load_split("train", "data.train", "wmt/wmt16", "ro-en", revision="v1.2")
    assert (seen["path"], seen["name"], seen["split"], seen["revision"]) == ("wmt/wmt16", "ro-en", "train", "v1.2")
    assert ds["translation.en"] == ["hi"] and "translation" in ds.column_names


def test_revision_is_named_when_the_hub_split_cannot_load(tiny_models, tmp_path):
    recipe = build_recipe(tmp_path / "r.yaml", "seq2seq", tiny_models["t5"], tmp_path / "run",
                          {"dataset": "no-such-org/no-such-dataset", "revision": "v1.2", "train": "train",
                           "validation": None, "source_column": "translation.en", "target_column": "translation.ro"})
    result = run_cli("finetune", str(recipe))
    assert result.exit_code == EXIT_DATA, result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "no-such-org/no-such-dataset (revision v1.2)" in errors[0], errors


def test_compressed_conll_and_json_lines_for_ner(tmp_path):
    from llmctl.tasks import ner_utils

    conll = write(tmp_path / "train.txt.gz", "EU B-ORG\nrejects O\n\nPeter B-PER\n")
    sentences = ner_utils.read_conll(conll, -1, "data.train")
    assert sentences.tokens == [["EU", "rejects"], ["Peter"]] and sentences.tags == [["B-ORG", "O"], ["B-PER"]]
    broken = tmp_path / "broken.txt.xz"
    broken.write_bytes(b"plain bytes, not xz")
    with pytest.raises(Exception, match=f"data.train: {broken} is not a readable xz file"):
        ner_utils.read_conll(broken, -1, "data.train")
