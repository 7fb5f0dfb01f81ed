"""The quickstart dataset must be deterministic, balanced, parseable and non-trivial."""

import csv
import re
import subprocess
import sys
from pathlib import Path

from llmctl.data.quickstart import write_sentiment_dataset


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_files_parse_and_are_balanced(tmp_path):
    paths = write_sentiment_dataset(tmp_path / "data")
    assert set(paths) == {"train", "validation", "predict"}
    texts = []
    for split, n in (("train", 600), ("validation", 200)):
        rows = read(paths[split])
        assert rows[0] == ["text", "label"]
        body = rows[1:]
        assert len(body) == n and all(len(r) == 2 for r in body)
        assert {r[1] for r in body} == {"negative", "positive"}
        assert 0.4 <= sum(r[1] == "positive" for r in body) / n <= 0.6
        assert all(4 <= len(r[0].split()) <= 40 for r in body)
        texts += [r[0] for r in body]
    assert len(set(texts)) == len(texts)  # no duplicates, so no train/validation leakage
    predict = paths["predict"].read_text(encoding="utf-8").splitlines()
    assert 8 <= len(predict) <= 12 and all(line.strip() for line in predict)
    assert not set(predict) & set(texts)


def test_deterministic_and_seeded(tmp_path):
    a = write_sentiment_dataset(tmp_path / "a", n_train=50, n_validation=20, seed=3)
    b = write_sentiment_dataset(tmp_path / "b", n_train=50, n_validation=20, seed=3)
    c = write_sentiment_dataset(tmp_path / "c", n_train=50, n_validation=20, seed=4)
    for key in a:
        assert a[key].read_bytes() == b[key].read_bytes()
    assert a["train"].read_bytes() != c["train"].read_bytes()
    assert len(read(a["train"])) == 51 and len(read(a["validation"])) == 21


def test_no_single_word_gives_the_label_away(tmp_path):
    rows = read(write_sentiment_dataset(tmp_path)["train"])[1:]
    words = [set(re.findall(r"[a-z']+", t.lower())) for t, _ in rows]
    positive = [label == "positive" for _, label in rows]
    best = max(
        sum((w in ws) == p for ws, p in zip(words, positive)) / len(rows)
        for w in set().union(*words)
    )
    assert best < 0.75, best  # "contains word X" must not be a near-perfect classifier
    # ...and negation really flips sentiment for some rows.
    assert any(" not " in t or " never " in t for t, label in rows if label == "positive")


def test_stdlib_only():
    # The CLI writes the demo data before deciding to load torch/transformers.  Load the file
    # alone (not via llmctl/__init__) so only this module's own imports are checked.
    path = Path(__file__).resolve().parents[2] / "llmctl" / "data" / "quickstart.py"
    code = ("import importlib.util, sys; "
            f"spec = importlib.util.spec_from_file_location('qd', {str(path)!r}); "
            "spec.loader.exec_module(importlib.util.module_from_spec(spec)); "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
