"""Causal-LM data: tokens per example (as training builds them: BOS, EOS, a chat template), what
packing would do (blocks, padding saved, steps), truncation when not packing, empty texts,
duplicates and train/validation overlap.

Example lengths come from the task's own featurize with packing off and no length limit, so
they count exactly the tokens training would see."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from llmctl.data.sources import looks_like_file
from llmctl.doctor import checks
from llmctl.doctor.report import line_of
from llmctl.tasks import causal_lm_file as lm_file

UNLIMITED = 1 << 30


def _rows(ctx, role: str, spec: str):
    """(where, header, chunks of {column: cells}) of one split, from the file (read a chunk at a
    time) or from the split finetune loaded (a Hub split)."""
    cfg, key = ctx.task.data_cfg, f"data.{role}"
    if not (cfg.dataset and not looks_like_file(spec)):
        path = Path(spec).expanduser()
        limit = ctx.task.row_limit(role)
        chat = lm_file.is_chat(path, key, cfg, limit)
        if not chat:  # chat data under another column: the split's own error says so, no text findings
            lm_file.check_chat_format(next(lm_file.read_chunks(path, key, cfg, limit), ([], {}))[0], cfg, str(path))
        return str(path), cfg.column_names is None, (cells for _, cells in lm_file.read_chunks(path, key, cfg, limit, chat))
    split = ctx.splits.get(role)
    if split is None:
        return None, True, iter(())
    cells = {"conversations": split.conversations} if split.conversations is not None else \
        {"prompts": split.prompts} | ({"completions": split.completions} if split.completions is not None else {})
    return split.where, True, iter([cells])


def _example_lengths(ctx, role: str) -> np.ndarray | None:
    split = ctx.splits.get(role)
    if split is None:
        return None
    unlimited = ctx.task.with_data(ctx.task.data_cfg.model_copy(update={"packing": False, "max_length": UNLIMITED}))
    return np.asarray(unlimited.featurize(split, ctx.tokenizer).lengths, dtype=np.int64)


def packing_figures(lengths: np.ndarray, size: int, cfg) -> dict:
    """Training rows, padding and steps unpacked (each example a row, cut at max_length) and packed."""
    from llmctl.train.loop import plan_steps

    tokens, kept = int(lengths.sum()), int(np.minimum(lengths, size).sum())
    blocks = math.ceil(tokens / size)
    unpacked_padding = lengths.size * size - kept  # every row padded to max_length
    packed_padding = blocks * size - tokens  # only the last block is short
    return {"examples": int(lengths.size), "tokens": tokens, "max_length": size, "blocks": blocks,
            "tokens_cut_unpacked": tokens - kept, "padding_unpacked": unpacked_padding,
            "padding_packed": packed_padding, "padding_saved": unpacked_padding - packed_padding,
            "steps_per_epoch_unpacked": plan_steps(int(lengths.size), cfg)[0],
            "steps_per_epoch_packed": plan_steps(blocks, cfg)[0]}


def _as_key(cell) -> str:
    """A cell as text to hash: a conversation (a list of dicts) as canonical JSON."""
    return cell if isinstance(cell, str) else json.dumps(cell, sort_keys=True, default=str)


def check(report, ctx) -> None:
    cfg = ctx.task.data_cfg
    learned = cfg.completion_column or cfg.text_column
    train = {}

    def one(role: str, spec: str):
        where, header, chunks = _rows(ctx, role, spec)
        hashed, empty, empty_lines, rows = [], 0, [], 0
        for cells in chunks:  # a chunk's texts are dropped once hashed: memory holds 8 bytes a row
            columns = list(cells)
            n = len(cells[columns[0]])
            texts = cells.get(learned, cells.get("completions", cells.get("prompts", [None] * n)))
            hashed.append(checks.hashes(["\x1f".join(_as_key(cells[c][i]) for c in columns) for i in range(n)]))
            for i, text in enumerate(texts):
                if isinstance(text, str) and not text.strip():
                    empty += 1
                    if len(empty_lines) < 5:
                        empty_lines.append(line_of(where, rows + i, header))
            rows += n
        line = lambda i: line_of(where, i, header)  # noqa: E731
        figures = {"rows": rows}
        lengths = _example_lengths(ctx, role)
        if lengths is not None:
            figures["tokens"] = checks.length_figures(lengths, cfg.max_length)
            if role == "train":
                figures["packing"] = packing_figures(lengths, cfg.max_length, ctx.recipe.train) | {"on": cfg.packing}
            if not (cfg.packing and role == "train"):
                checks.check_truncation(report, role, figures["tokens"], lengths, line)
        report.splits[role] = figures
        checks.check_empty(report, role, empty, empty_lines)
        hashed = np.concatenate(hashed) if hashed else np.zeros(0, np.uint64)
        checks.check_duplicates(report, role, hashed, line)
        if role == "train":
            train["hashes"] = hashed
        else:
            checks.check_leakage(report, role, hashed, train.get("hashes", np.zeros(0, np.uint64)), line)

    for role, spec in ctx.specs.items():
        ctx.guard(report, role, lambda: one(role, spec))
