"""Seq2seq data: source and target token lengths (each cut at its own limit), empty texts,
duplicate pairs and sources shared between train and validation."""

from __future__ import annotations

import numpy as np

from llmctl.doctor import checks
from llmctl.doctor.report import line_of

TOKENIZE_ROWS = 1_000


def _lengths(tokenizer, texts: list[str]) -> np.ndarray:
    out = []
    for lo in range(0, len(texts), TOKENIZE_ROWS):
        out.extend(len(ids) for ids in tokenizer(texts[lo:lo + TOKENIZE_ROWS], truncation=False)["input_ids"])
    return np.asarray(out, dtype=np.int64)


def check(report, ctx) -> None:
    cfg = ctx.task.data_cfg
    train_hashes = np.zeros(0, np.uint64)
    for role, split in ctx.splits.items():
        sources = [cfg.source_prefix + s for s in split.sources]
        targets = split.targets or []
        source_lengths = _lengths(ctx.tokenizer, sources)
        target_lengths = _lengths(ctx.tokenizer, targets)
        figures = {"rows": len(split), "tokens": checks.length_figures(source_lengths, cfg.max_length)}
        if targets:
            figures["target_tokens"] = checks.length_figures(target_lengths, cfg.max_target_length)
        report.splits[role] = figures
        line = lambda i, where=split.where: line_of(where, i)  # noqa: E731
        checks.check_truncation(report, role, figures["tokens"], source_lengths, line)
        if targets:
            checks.check_truncation(report, role, figures["target_tokens"], target_lengths, line, "targets",
                                   "data.max_target_length")
        empty = [i for i, s in enumerate(split.sources) if not s.strip()]
        checks.check_empty(report, role, len(empty), [line(i) for i in empty[:5]], "source")
        hashed = checks.hashes(split.sources)
        checks.check_duplicates(report, role, checks.hashes([s + "\x1e" + t for s, t in zip(split.sources, targets)])
                                if targets else hashed, line)
        if role == "train":
            train_hashes = hashed
        else:
            checks.check_leakage(report, role, hashed, train_hashes, line, "sources")
