"""DPO's reference log-probabilities: computed once by the reference and kept in the feature cache.

The reference is the starting weights: the model as loaded, before the first step, or, under
LoRA, the same model with its adapters switched off (peft's `disable_adapter`; no second copy).
Each pair's log-probability of its chosen and its rejected response becomes a column of the
features (ref_chosen_logps, ref_rejected_logps). The cache entry's key holds a digest of the
features' token arrays and of the reference's weights (adapter weights left out), plus the
precision and device type they were computed in; a rerun, a resumed run and every epoch read
them back and never run the reference again. The note says which happened.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from dataclasses import replace

from llmctl.events import Note

_log = logging.getLogger("llmctl")
COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
BATCH = 8


def _features_digest(features) -> str:
    import numpy as np

    from llmctl.data.store import Ragged

    digest = hashlib.sha256()
    for name in ("prompt_input_ids", "chosen_input_ids", "rejected_input_ids"):
        column = features.columns[name]
        if isinstance(column, Ragged):
            digest.update(np.ascontiguousarray(column.values, dtype=np.int64).tobytes())
            digest.update(np.ascontiguousarray(column.offsets, dtype=np.int64).tobytes())
        else:
            for row in column:
                digest.update(np.asarray(row, dtype=np.int64).tobytes() + b"|")
    return digest.hexdigest()


def weights_digest(model) -> str:
    """sha256 of the reference's weights: every parameter and buffer but LoRA's."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if "lora_" in name:
            continue
        digest.update(name.encode())
        data = tensor.detach().cpu().contiguous()
        digest.update(str(data.dtype).encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def reference_context(model):
    """The reference: adapters off under LoRA (peft's context manager), the model itself otherwise."""
    disable = getattr(model, "disable_adapter", None)
    return disable() if callable(disable) and hasattr(model, "peft_config") else contextlib.nullcontext()


def _dropout_free(model) -> bool:
    """Whether no dropout setting of the model's config is above 0 (a preference model's are set to 0)."""
    config = getattr(model, "config", None)
    settings = config.to_dict() if config is not None else {"unknown_dropout": 1.0}
    return not any(("dropout" in k or "pdrop" in k) and isinstance(v, float) and v > 0 for k, v in settings.items())


@contextlib.contextmanager
def steps_forward(model):
    """The forward the training steps run, without a graph. In bf16 the CPU speed-ups' training
    kernels (llmctl.train.speedups.attention: fp32 softmax) give other last bits than the
    inference ones, enough to move DPO's first loss off log 2 by 4e-3 for SmolLM2: so, where
    no dropout would make it random, the reference runs in train mode with gradients on, every
    weight frozen for the pass so that nothing is recorded; else in eval mode, without gradients."""
    import torch

    was_training = model.training
    if not _dropout_free(getattr(model, "get_base_model", lambda: model)()):
        model.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            model.train(was_training)
        return
    thawed = [p for p in model.parameters() if p.requires_grad]
    model.train()
    try:
        for p in thawed:
            p.requires_grad_(False)
        with torch.enable_grad():
            yield
    finally:
        for p in thawed:
            p.requires_grad_(True)
        model.train(was_training)


def compute(task, features, model, accelerator):
    """(chosen, rejected) reference log-probabilities of every pair, in feature order."""
    import numpy as np

    from llmctl.tasks.labelled_nll import LOGIT_BUDGET, labelled_logps

    tokenizer = features.tokenizer
    chosen, rejected = np.zeros(len(features)), np.zeros(len(features))
    order = np.argsort(np.asarray(features.lengths), kind="stable")
    with steps_forward(model), reference_context(model), accelerator.autocast():
        for start in range(0, len(order), BATCH):
            ids = order[start : start + BATCH]
            batch = task.collate(features.rows(ids), tokenizer)
            inputs = {k: batch[k].to(accelerator.device) for k in ("input_ids", "attention_mask")}
            logps = labelled_logps(model, inputs, batch["labels"].to(accelerator.device), LOGIT_BUDGET).sums
            logps = logps.detach().double().cpu().numpy()
            chosen[ids], rejected[ids] = logps[: len(ids)], logps[len(ids) :]
    return chosen, rejected


def starting_model(task, tokenizer, accelerator):
    """The model a full fine-tune started from (the run's recorded model section), on the device."""
    from llmctl.config.schema import ModelConfig
    from llmctl.errors import UsageError
    from llmctl.models.load import auto_class, load_model

    if not task.reference:
        raise UsageError("This preference run does not record the model it started from, which DPO's "
                         "reference is.", "Evaluate with --recipe naming the recipe it was trained with.")
    model = load_model(auto_class(task.auto_model), ModelConfig.model_validate(task.reference), tokenizer)
    return model.to(accelerator.device)


def with_reference(task, features, model, accelerator, use_cache: bool = True):
    """`features` with the reference columns, from the cache when an entry matches."""
    from llmctl import __version__
    from llmctl.data import cache
    from llmctl.data.features import Features

    bare = accelerator.unwrap_model(model)
    notes: list[str] = []
    key = None
    if use_cache:
        key = cache.Key({"format": cache.FORMAT, "llmctl": __version__, "task": "preference-reference",
                         "forward": "steps",
                         "features": _features_digest(features), "reference": weights_digest(bare),
                         "autocast": str(accelerator.mixed_precision), "device": accelerator.device.type})
        stored = cache.lookup(key, notes)
        if stored is not None and len(stored) == len(features):
            notes.append(f"reference log-probs: {len(features):,} pairs from the cache "
                         f"({cache.entries_dir() / key.digest}); the reference does not run.")
            return _joined(features, stored.columns, notes)
    started = time.perf_counter()
    chosen, rejected = compute(task, features, bare, accelerator)
    columns = {COLUMNS[0]: chosen, COLUMNS[1]: rejected}
    stored_note = ""
    if key is not None and cache.write(key, Features(columns=columns, lengths=list(features.lengths)), notes):
        stored_note = ", stored in the feature cache"
    notes.append(f"reference log-probs: computed for {len(features):,} pairs in "
                 f"{time.perf_counter() - started:.1f}s{stored_note}.")
    return _joined(features, columns, notes)


def _joined(features, columns: dict, notes: list[str]):
    import numpy as np

    merged = dict(features.columns) | {name: np.asarray(columns[name], dtype=np.float64) for name in COLUMNS}
    # Only what this step has to say: the features' own notes were shown when they were made.
    return replace(features, columns=merged, notes=tuple(Note(n) for n in notes))
