"""The feature cache and the columnar feature store, through the CLI on real files: miss then hit,
corrupt entries rebuilt, an unwritable cache, a full disk, two writers at once, and streamed
training files that give the same model as files read whole."""

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from helpers import REPO, run_cli, sentiment_rows, write_csv, write_recipe
from llmctl.errors import EXIT_OK, EXIT_RUNTIME


@pytest.fixture
def setup(tmp_path, tiny_models):
    train = write_csv(tmp_path / "train.tsv", sentiment_rows(48), delimiter="\t")
    valid = write_csv(tmp_path / "valid.csv", sentiment_rows(12))
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, valid, tmp_path / "run",
                          train={"epochs": 1, "batch_size": 8})
    return recipe, {"LLMCTL_CACHE_DIR": str(tmp_path / "cache")}, tmp_path


def finetune(recipe, env, out, *flags):
    result = run_cli("finetune", str(recipe), "--output-dir", str(out), "--json", *flags, env=env)
    assert result.exit_code == EXIT_OK, result.stderr
    return result


def entries(tmp_path):
    root = tmp_path / "cache" / "features"
    return sorted(p for p in root.iterdir()) if root.is_dir() else []


def test_second_run_starts_without_tokenizing_and_trains_the_same(setup):
    recipe, env, tmp = setup
    first = finetune(recipe, env, tmp / "a")
    assert first.json()["data"]["cache"] == "miss" and first.json()["data"]["train_rows"] == 48
    assert "tokenizing the training data: 48/48 rows" in first.stderr  # plain progress lines off a terminal
    [entry] = entries(tmp)
    second = finetune(recipe, env, tmp / "b")
    assert second.json()["data"]["cache"] == "hit"
    assert "tokenizing" not in second.stderr and f"from the cache ({entry})" in second.stderr
    assert second.json()["metrics"] == first.json()["metrics"]
    assert (tmp / "a" / "model" / "model.safetensors").read_bytes() == (tmp / "b" / "model" / "model.safetensors").read_bytes()
    # Another max_length is other features: a new entry, the first kept.
    third = finetune(recipe, env, tmp / "c", "--set", "data.max_length=8")
    assert third.json()["data"]["cache"] == "miss" and len(entries(tmp)) == 2

    listed = run_cli("cache", "list", "--json", env=env)
    assert listed.exit_code == EXIT_OK
    rows = {e["key"]: e for e in listed.json()["entries"]}
    assert rows[entry.name]["task"] == "classification" and rows[entry.name]["rows"] == 48
    assert rows[entry.name]["source"] == str((tmp / "train.tsv").resolve())
    kept = run_cli("cache", "clear", "--older-than", "1", "--json", env=env)
    assert kept.json()["removed"] == 0 and len(entries(tmp)) == 2
    cleared = run_cli("cache", "clear", env=env)
    assert cleared.exit_code == EXIT_OK and cleared.stdout.startswith("removed 2 entries")
    assert entries(tmp) == []


def test_a_corrupt_entry_is_named_rebuilt_and_never_trusted(setup):
    recipe, env, tmp = setup
    first = finetune(recipe, env, tmp / "a")
    [entry] = entries(tmp)
    values = entry / "input_ids.values.npy"
    data = bytearray(values.read_bytes())
    data[-1] ^= 0xFF  # one token id changed: the file still loads, only the checksum can tell
    values.write_bytes(bytes(data))
    again = finetune(recipe, env, tmp / "b")
    assert again.json()["data"]["cache"] == "miss"
    assert (f"feature cache entry {entry} is corrupt (input_ids.values.npy does not match its checksum); "
            "rebuilding it.") in again.stderr
    assert again.json()["metrics"] == first.json()["metrics"]
    (entry / "manifest.json").unlink()  # half-written (no manifest): not an entry at all
    assert finetune(recipe, env, tmp / "c").json()["data"]["cache"] == "miss"


def test_cache_off_unwritable_and_full(setup):
    recipe, env, tmp = setup
    off = finetune(recipe, env, tmp / "a", "--set", "data.cache=false")
    assert off.json()["data"]["cache"] == "off" and entries(tmp) == []
    blocker = tmp / "not-a-dir"
    blocker.write_text("")
    unwritable = finetune(recipe, {"LLMCTL_CACHE_DIR": str(blocker)}, tmp / "b")
    warnings = [line for line in unwritable.stderr.splitlines() if "feature cache" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: the feature cache {blocker} is not writable")
    assert unwritable.json()["metrics"] == off.json()["metrics"]
    full = run_cli("finetune", str(recipe), "--output-dir", str(tmp / "c"), env=env | {"LLMCTL_FAULT": "enospc@0:cache/"})
    assert full.exit_code == EXIT_RUNTIME
    [line] = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: Could not write the feature cache entry in {tmp / 'cache' / 'features'}: disk full")
    assert "the partial entry was removed" in line and "data.cache: false" in line
    assert list((tmp / "cache" / "features").iterdir()) == []  # no partial entry, no temporary folder
    assert not (tmp / "c").exists()  # the run had not started: nothing of it on disk


def test_two_runs_writing_the_same_entry_at_once(setup):
    recipe, env, tmp = setup
    full_env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)} | env
    procs = [subprocess.Popen([sys.executable, "-m", "llmctl", "finetune", str(recipe), "--output-dir", str(tmp / name),
                               "--json"], env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("a", "b")]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    assert json.loads(outs[0][0])["metrics"] == json.loads(outs[1][0])["metrics"]
    assert len(entries(tmp)) == 1 and not any(p.name.startswith(".") for p in (tmp / "cache" / "features").iterdir())


def test_store_write_race_and_checksums_in_process(tmp_path, monkeypatch):
    """The losing writer of a race drops its copy; the winner's entry stays and verifies."""
    from llmctl.data import cache
    from llmctl.data.store import Ragged
    from llmctl.data.features import Features

    monkeypatch.setenv("LLMCTL_CACHE_DIR", str(tmp_path))
    features = Features({"input_ids": Ragged.from_lists([[1, 2, 3], [4]]), "labels": np.array([0, 1], np.uint8)},
                        np.array([3, 1], np.int32))
    key = cache.Key({"test": 1})
    notes = []
    assert cache.write(key, features, notes) and cache.write(key, features, notes) and notes == []
    assert [p.name for p in cache.entries_dir().iterdir()] == [key.digest]
    loaded = cache.lookup(key, notes)
    assert [list(r) for r in loaded.columns["input_ids"]] == [[1, 2, 3], [4]]
    assert loaded.rows([1, 0])[0] == {"input_ids": loaded.columns["input_ids"][1], "labels": 1, "index": 1}


def test_streamed_file_trains_the_same_model_as_a_file_read_whole(tmp_path, tiny_models):
    """A .tsv is read in chunks (and single sentences drop their all-zero token_type_ids); a
    .jsonl of the same rows is read whole: the trained weights must be identical."""
    rows = sentiment_rows(40)
    tsv = write_csv(tmp_path / "train.tsv", rows, delimiter="\t")
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    valid = write_csv(tmp_path / "valid.csv", sentiment_rows(12))
    results = []
    for name, train in (("streamed", tsv), ("whole", jsonl)):
        recipe = write_recipe(tmp_path / f"{name}.yaml", tiny_models["bert"], train, valid, tmp_path / name,
                              train={"epochs": 1, "batch_size": 8})
        results.append(run_cli("finetune", str(recipe), "--json", "--set", "data.cache=false"))
        assert results[-1].exit_code == EXIT_OK, results[-1].stderr
    assert results[0].json()["metrics"] == results[1].json()["metrics"]
    assert ((tmp_path / "streamed" / "model" / "model.safetensors").read_bytes()
            == (tmp_path / "whole" / "model" / "model.safetensors").read_bytes())


def test_feature_store_is_flat_arrays_and_bounded_by_a_chunk(tmp_path, tiny_models, monkeypatch):
    """One chunk of generated rows and four: the store holds narrow flat arrays (no per-token Python
    objects) and the Python heap while tokenizing is bounded by one chunk, not by the file. Chunks
    of 12,500 rows rather than the shipped 50,000 keep it quick under tracemalloc; the bound is the same."""
    from transformers import AutoTokenizer

    from llmctl.data.store import Ragged
    from llmctl.tasks import classification
    from llmctl.tasks.classification import ClassificationTask
    from llmctl.tasks.classification_data import ClassificationData

    monkeypatch.setattr(classification, "CHUNK_ROWS", 12_500)
    CHUNK_ROWS = classification.CHUNK_ROWS

    words = "the a film movie was great dull and not very truly awful good plot acting story".split()
    rng = np.random.default_rng(0)

    def write(path, n):
        with open(path, "w") as handle:
            handle.write("sentence\tlabel\n")
            for i in range(n):
                handle.write(" ".join(rng.choice(words, size=rng.integers(8, 31))) + f"\t{i % 2}\n")
        return path

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bert"])
    peaks, sizes, tokens = {}, {}, {}
    for n in (CHUNK_ROWS, 4 * CHUNK_ROWS):
        task = ClassificationTask(ClassificationData(train=str(write(tmp_path / f"{n}.tsv", n)), max_length=64))
        split = task.load_split("train", str(tmp_path / f"{n}.tsv"))
        task = task.with_labels(task.fit(split))
        tracemalloc.start()
        features = task.featurize(split, tokenizer)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        ids = features.columns["input_ids"]
        assert isinstance(ids, Ragged) and len(ids) == n == len(features)
        tokens[n] = int(ids.offsets[-1])
        sizes[n] = ids.values.nbytes + ids.offsets.nbytes + features.columns["labels"].nbytes
        assert ids.values.dtype == np.uint16 and ids.values.nbytes == 2 * tokens[n]  # 2 bytes a token
        assert ids.offsets.nbytes == 8 * (n + 1) and features.columns["labels"].dtype == np.uint8
        assert set(features.columns) == {"input_ids", "labels"}  # single sentences: no token_type_ids
    # Four times the rows, not four times the transient heap: the arrays grow (and are copied once
    # when the chunks are joined), the chunks do not; a Python int per token would be 36 bytes.
    grown = peaks[4 * CHUNK_ROWS] - peaks[CHUNK_ROWS]
    assert grown < 2.5 * (sizes[4 * CHUNK_ROWS] - sizes[CHUNK_ROWS]), (peaks, sizes)
    assert peaks[4 * CHUNK_ROWS] < 10 * tokens[4 * CHUNK_ROWS], (peaks, tokens)


def test_tokenizing_in_parallel_when_the_user_left_it_unset(setup, monkeypatch):
    """With TOKENIZERS_PARALLELISM unset the training data is tokenized on every core, then the
    setting goes back to off: same model as a run with it off, and no fork warning from tokenizers."""
    recipe, env, tmp = setup
    runs = {value: finetune(recipe, env | {"TOKENIZERS_PARALLELISM": value, "LLMCTL_CACHE_DIR": str(tmp / f"c-{value}")},
                            tmp / f"run-{value}") for value in (None, "false")}
    for result in runs.values():
        assert "huggingface/tokenizers" not in result.stderr and result.json()["data"]["cache"] == "miss"
    models = [(tmp / f"run-{v}" / "model" / "model.safetensors").read_bytes() for v in runs]
    assert models[0] == models[1]

    from llmctl.data.prepare import parallel_tokenizing

    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # what quiet_libraries leaves
    with parallel_tokenizing(user_setting=None):
        assert os.environ["TOKENIZERS_PARALLELISM"] == "true"
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    with parallel_tokenizing(user_setting="false"):  # the user's choice stands
        assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
