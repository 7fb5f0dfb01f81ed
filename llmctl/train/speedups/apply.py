"""The CPU training speed-ups, in one place. Each module says why its change computes the
same thing as the plain model; README's Benchmarks section lists what each one saves.
CUDA runs keep the stock model: its kernels already fuse this work.

LLMCTL_CPU_SPEEDUPS=0 trains the stock model instead (to compare, or to rule them out).
"""

from __future__ import annotations

import os
from typing import Callable


def speed_up_cpu_training(model, train_features, tokenizer, precision: str = "fp32",
                          adamw: bool = True) -> tuple[list[str], Callable]:
    """Apply every speed-up that fits `model`, trained in `precision`. Returns the names of those
    applied (the run's environment.json records them) and `attach(optimizer)`, to call once the
    optimizer exists: the seen-rows embedding needs a step hook on it, and only AdamW's update of
    an unseen row is the plain weight decay it applies (`adamw` False: not used)."""
    if os.environ.get("LLMCTL_CPU_SPEEDUPS", "1") == "0":
        return [], lambda optimizer: None
    from llmctl.train.speedups.attention import use_fast_attention
    from llmctl.train.speedups.dropout import use_fast_dropout
    from llmctl.train.speedups.first_token import compute_first_position_only
    from llmctl.train.speedups.frozen_weights import store_frozen_linears_in_bf16
    from llmctl.train.speedups.labelled_positions import finish_labelled_positions_only
    from llmctl.train.speedups.learned_tokens import project_learned_tokens_only
    from llmctl.train.speedups.masked_positions import predict_masked_positions_only
    from llmctl.train.speedups.memory import keep_freed_memory
    from llmctl.train.speedups.seen_rows import decay_unseen_rows, seen_token_ids, train_seen_rows_only

    seen = None
    if adamw:
        seen = train_seen_rows_only(model, seen_token_ids(train_features.columns, [tokenizer.pad_token_id]))
    applied = {
        "keep_freed_memory": keep_freed_memory(),
        "fast_dropout": use_fast_dropout(model) > 0,
        "fast_attention": use_fast_attention(model),
        "first_position_only": compute_first_position_only(model),
        "labelled_positions_only": finish_labelled_positions_only(model),
        "masked_positions_only": predict_masked_positions_only(model),
        "learned_tokens_only": project_learned_tokens_only(model),
        "frozen_weights_bf16": precision == "bf16" and store_frozen_linears_in_bf16(model),
        "seen_embedding_rows": seen is not None,
    }

    def attach(optimizer) -> None:
        if seen is not None:
            decay_unseen_rows(optimizer, seen)

    return [name for name, done in applied.items() if done], attach
