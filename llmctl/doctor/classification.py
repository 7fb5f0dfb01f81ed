"""Classification data: label counts and balance, labels validation has that training never shows,
empty texts, duplicates, train/validation overlap, token lengths and truncation.

Each split is read again a chunk at a time through the reader finetune uses
(llmctl.data.streams.iter_table), so a million-row file is never whole in memory; training token
lengths come from the training features (the feature cache), and only rows cut at max_length are
tokenized again, without truncation, to learn their full length."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from llmctl.data.sources import load_split, looks_like_file
from llmctl.data.streams import iter_table
from llmctl.doctor import checks
from llmctl.doctor.report import line_of

CHUNK_ROWS = 50_000
TOKENIZE_ROWS = 2_000


def _norm(value) -> str:
    """A label as one string for counting: 1, 1.0 and "1" alike (files type integers either way)."""
    if isinstance(value, float) and not math.isnan(value) and value == int(value):
        return str(int(value))
    return str(value).strip()


def _named(counts: dict, names) -> dict:
    """Label counts keyed by data.label_names' names where the file holds their integer ids (0 -> names[0])."""
    if not names:
        return counts
    named = {}
    for label, n in counts.items():
        at = int(label) if label.isdigit() and label not in names and int(label) < len(names) else None
        key = names[at] if at is not None else label
        named[key] = named.get(key, 0) + n
    return named


def _frames(ctx, role: str, spec: str):
    """(where, header, frames of the text and label columns) for one split, as finetune reads it."""
    cfg, key = ctx.task.data_cfg, f"data.{role}"
    wanted = list(cfg.text_columns) + [cfg.label_column]
    limit = ctx.task.row_limit(role)
    if cfg.dataset and not looks_like_file(spec):
        ds, where = load_split(spec, key, cfg.dataset, cfg.config, cfg.column_names)
        ds = ds.select(range(min(limit, len(ds)))) if limit is not None else ds
        frame = ds.select_columns([c for c in wanted if c in ds.column_names]).to_pandas()
        return where, True, (frame.iloc[i:i + CHUNK_ROWS] for i in range(0, len(frame), CHUNK_ROWS))
    path = Path(spec).expanduser()
    columns, chunks = iter_table(path, key, wanted, cfg.column_names, CHUNK_ROWS, limit)
    if any(c not in columns for c in wanted):
        ctx.task.load_split(role, spec)  # raises the loader's own "column ... is not in" error
    return str(path), cfg.column_names is None, chunks


class Scan:
    """What one pass over a split learns."""

    def __init__(self):
        self.rows = 0
        self.text_hashes, self.row_hashes, self.lengths = [], [], []
        self.labels: Counter = Counter()
        self.empty, self.empty_lines = 0, []
        self.unseen: Counter = Counter()
        self.unseen_lines: list[int] = []


def _scan(ctx, role: str, spec: str, known: set | None, feature_lengths) -> tuple[Scan, callable]:
    """One pass over a split. `known`: training's labels (an evaluation split is checked against
    them); `feature_lengths`: the training features' (truncated) lengths, else every row is
    tokenized here without truncation. Per-row work stays in pandas / numpy: a million rows take
    seconds, not minutes."""
    cfg, tokenizer = ctx.task.data_cfg, ctx.tokenizer
    where, header, frames = _frames(ctx, role, spec)
    regression = ctx.task.labels.regression
    scan = Scan()
    for frame in frames:
        start = scan.rows
        columns = [frame[c].astype("string").fillna("") for c in cfg.text_columns]
        joined = columns[0] if len(columns) == 1 else columns[0] + "\x1f" + columns[1]
        text_hashes = checks.hashes(joined.to_numpy(dtype=object))
        empty = np.flatnonzero(np.logical_or.reduce([c.str.strip().eq("").to_numpy(dtype=bool) for c in columns]))
        scan.empty += empty.size
        scan.empty_lines += [line_of(where, start + int(i), header) for i in empty[:5 - len(scan.empty_lines)]]
        # Labels: each distinct value normalised once, rows as codes into those values.
        codes, values = pd.factorize(frame[cfg.label_column], use_na_sentinel=True)
        names = [_norm(v) for v in values] + [""]  # code -1 (a missing label) is the last name
        codes = np.where(codes < 0, len(values), codes)
        label_hashes = checks.hashes(names)[codes]
        scan.text_hashes.append(text_hashes)
        scan.row_hashes.append(text_hashes ^ (label_hashes * np.uint64(0x9E3779B97F4A7C15)))
        if not regression:
            for code, n in enumerate(np.bincount(codes, minlength=len(names))):
                if n:
                    scan.labels[names[code]] += int(n)
            if known is not None:
                unseen = [code for code, name in enumerate(names) if name not in known]
                rows = np.flatnonzero(np.isin(codes, unseen))
                for i in rows:
                    scan.unseen[names[codes[i]]] += 1
                scan.unseen_lines += [line_of(where, start + int(i), header)
                                      for i in rows[:5 - len(scan.unseen_lines)]]
        texts = [c.to_numpy(dtype=object) for c in columns]
        scan.lengths.append(_full_lengths(tokenizer, texts, cfg.max_length, feature_lengths, start))
        scan.rows += len(frame)
    return scan, lambda i: line_of(where, i, header)


def _full_lengths(tokenizer, texts, max_length: int, feature_lengths, start: int) -> np.ndarray:
    """Untruncated token counts of a chunk: from the features, re-tokenizing only the rows cut at max_length."""
    n = len(texts[0])
    if feature_lengths is not None and start + n <= len(feature_lengths):
        lengths = np.asarray(feature_lengths[start:start + n], dtype=np.int64).copy()
        todo = np.flatnonzero(lengths >= max_length)
    else:
        lengths, todo = np.zeros(n, dtype=np.int64), np.arange(n)
    for lo in range(0, todo.size, TOKENIZE_ROWS):
        rows = todo[lo:lo + TOKENIZE_ROWS]
        parts = [[column[i] for i in rows] for column in texts]
        enc = tokenizer(parts[0], parts[1] if len(parts) > 1 else None, truncation=False)
        lengths[rows] = [len(ids) for ids in enc["input_ids"]]
    return lengths


def check(report, ctx) -> None:
    cfg = ctx.task.data_cfg
    train_hashes, known = np.zeros(0, dtype=np.uint64), None

    def one(role: str, spec: str):
        nonlocal train_hashes, known
        features = ctx.train_features if role == "train" else None
        scan, lines = _scan(ctx, role, spec, known if role != "train" else None,
                            features.lengths if features is not None else None)
        text_hashes = np.concatenate(scan.text_hashes) if scan.text_hashes else np.zeros(0, dtype=np.uint64)
        lengths = np.concatenate(scan.lengths)
        figures = {"rows": scan.rows, "tokens": checks.length_figures(lengths, cfg.max_length)}
        if scan.labels:
            figures["labels"] = checks.label_figures(_named(dict(scan.labels), cfg.label_names))
            checks.check_imbalance(report, role, figures["labels"])
        report.splits[role] = figures
        checks.check_empty(report, role, scan.empty, scan.empty_lines)
        row_hashes = np.concatenate(scan.row_hashes)
        checks.check_duplicates(report, role, row_hashes, lines)
        if scan.labels:
            checks.check_conflicts(report, role, text_hashes, row_hashes, lines)
        if role == "train":
            train_hashes, known = text_hashes, set(scan.labels)
        else:
            checks.check_leakage(report, role, text_hashes, train_hashes, lines)
            checks.check_unseen(report, role, dict(scan.unseen), scan.unseen_lines)
        checks.check_truncation(report, role, figures["tokens"], lengths, lines)

    for role, spec in ctx.specs.items():
        if role != "train" and "train" in ctx.refused:
            break
        ctx.guard(report, role, lambda: one(role, spec))
