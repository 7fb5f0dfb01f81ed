"""Any other task: rows per split and the training features' token counts (after truncation)."""

from __future__ import annotations

import numpy as np

from llmctl.doctor import checks


def check(report, ctx) -> None:
    for role, split in ctx.splits.items():
        report.splits[role] = {"rows": len(split)}
    if ctx.train_features is not None:
        lengths = np.asarray(ctx.train_features.lengths)
        report.splits["train"]["tokens"] = checks.length_figures(lengths, None) | {"after_truncation": True}
