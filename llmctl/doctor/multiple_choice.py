"""Multiple-choice data: rows per split, and each example's longest choice in tokens before
truncation (what data.max_length cuts; not a sum over the endings)."""

from __future__ import annotations

import numpy as np

from llmctl.doctor import checks
from llmctl.doctor.report import line_of


def check(report, ctx) -> None:
    cfg = ctx.task.data_cfg
    for role, split in ctx.splits.items():
        report.splits[role] = {"rows": len(split)}
        features = ctx.train_features if role == "train" else ctx.task.featurize(split, ctx.tokenizer)
        longest = (features.meta or {}).get("longest") if features is not None else None
        if not longest:
            continue
        lengths = np.asarray(longest, dtype=np.int64)
        figures = checks.length_figures(lengths, cfg.max_length) | {"per": "example's longest choice, before truncation"}
        report.splits[role]["tokens"] = figures
        checks.check_truncation(report, role, figures, lengths, lambda i: line_of(split.where, i))
