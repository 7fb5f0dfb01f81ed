"""json lines are read in chunks like csv/tsv/parquet: same values as a whole read, same errors."""

import json

import pytest

from llmctl.data.sources import read_table
from llmctl.data.streams import iter_table
from llmctl.errors import DataError


def write(path, lines):
    path.write_bytes(b"".join(line if isinstance(line, bytes) else (line + "\n").encode() for line in lines))
    return path


def test_chunks_hold_the_rows_of_a_whole_read(tmp_path):
    rows = [{"sentence": f"row {i}", "label": i % 3, "extra": [i]} for i in range(10)]
    path = write(tmp_path / "train.jsonl", [json.dumps(r) for r in rows[:4]] + [""] + [json.dumps(r) for r in rows[4:]])
    names, chunks = iter_table(path, "data.train", ["sentence", "label", "absent"], chunk_rows=3)
    frames = list(chunks)
    assert names == ["sentence", "label", "extra"]
    assert [len(f) for f in frames] == [3, 3, 3, 1]
    assert all(list(f.columns) == ["sentence", "label"] for f in frames)
    whole = read_table(path, "data.train")
    assert [v for f in frames for v in f["sentence"].tolist()] == whole["sentence"].tolist()
    assert [v for f in frames for v in f["label"].tolist()] == whole["label"].tolist() == [i % 3 for i in range(10)]
    _, limited = iter_table(path, "data.train", ["label"], chunk_rows=3, limit=5)
    assert [len(f) for f in limited] == [3, 2]


def test_a_missing_key_is_an_empty_cell(tmp_path):
    path = write(tmp_path / "train.jsonl", ['{"sentence": "a", "label": 0}', '{"label": 1}'])
    _, chunks = iter_table(path, "data.train", ["sentence", "label"], chunk_rows=10)
    assert next(chunks)["sentence"].isna().tolist() == [False, True]


@pytest.mark.parametrize("lines, message", [
    (['{"sentence": "a", "label": 0}'] * 4 + ['{"sentence": "b", "label": }'], "train.jsonl:5:28: invalid JSON: Expecting value."),
    (['{"sentence": "a", "label": 0}', '[1, 2]'], "train.jsonl:2: expected a JSON object per line, got list."),
])
def test_a_bad_line_is_named_by_file_and_line_even_in_a_later_chunk(tmp_path, lines, message):
    path = write(tmp_path / "train.jsonl", lines)
    with pytest.raises(DataError) as streamed:  # a bad first chunk is reported by iter_table itself
        list(iter_table(path, "data.train", ["sentence", "label"], chunk_rows=2)[1])
    assert str(streamed.value).startswith(f"{path}:") and message in str(streamed.value)
    if "invalid JSON" in message:  # the same line and column as a whole read gives
        with pytest.raises(DataError) as whole:
            read_table(path, "data.train")
        assert str(whole.value) == str(streamed.value)


def test_non_utf8_and_empty_files(tmp_path):
    bad = write(tmp_path / "bad.jsonl", ['{"sentence": "a", "label": 0}', b'{"sentence": "caf\xe9", "label": 1}\n'])
    with pytest.raises(DataError) as streamed:
        list(iter_table(bad, "data.train", ["sentence"], chunk_rows=1)[1])
    with pytest.raises(DataError) as whole:
        read_table(bad, "data.train")
    assert str(streamed.value) == str(whole.value)
    assert f"data.train: {bad} is not UTF-8 text" in str(streamed.value) and "at byte 47" in str(streamed.value)
    empty = write(tmp_path / "empty.jsonl", ["", "  "])
    with pytest.raises(DataError, match="has no rows"):
        iter_table(empty, "data.train", ["sentence"])
