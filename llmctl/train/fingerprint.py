"""What a checkpoint must match to be resumed: the recipe, the training data, the libraries.

A resumed run only continues the original if all three are the same; otherwise the
"resumed" weights would silently mix two different runs. Settings that do not change
the training trajectory (logging, checkpoint cadence, eval batch size) may differ.
"""

from __future__ import annotations

import hashlib
import json

HARMLESS = {"output_dir", "train.logging_steps", "train.report_to", "train.keep_checkpoints", "train.save_every", "train.eval_batch_size"}
LIBRARIES = ("torch", "transformers", "accelerate")


def flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten(value, name + ".")
        else:
            flat[name] = value
    return flat


def fingerprint(recipe, train_features) -> dict:
    from importlib.metadata import version

    import numpy as np

    from llmctl.data.store import Ragged

    digest = hashlib.sha256()
    for name in sorted(train_features.columns):
        digest.update(name.encode())
        column = train_features.columns[name]
        if isinstance(column, Ragged):  # values as int64, so the narrow storage type never matters
            _update(digest, column.values, np.int64)
            _update(digest, column.offsets, np.int64)
        elif isinstance(column, np.ndarray):
            _update(digest, column, np.float64 if column.dtype.kind == "f" else np.int64)
        else:
            digest.update(json.dumps(column, separators=(",", ":")).encode())
    recipe_flat = {k: v for k, v in flatten(recipe.model_dump(mode="json")).items() if k not in HARMLESS}
    return {"recipe": recipe_flat, "data_sha256": digest.hexdigest(),
            "versions": {name: version(name) for name in LIBRARIES}}


def _update(digest, array, dtype) -> None:
    """Hash `array` as `dtype` a block at a time: a whole int64 copy of 100M token ids would
    cost 800 MB for a moment, and a mapped column keeps no pages resident afterwards."""
    import numpy as np

    from llmctl.data.store import blocks

    for block in blocks(array):
        digest.update(np.ascontiguousarray(block, dtype=dtype).tobytes())


def differences(saved: dict, current: dict) -> list[str]:
    """Readable lines for everything that differs; empty when the run can be resumed."""
    lines = []
    old, new = saved.get("recipe", {}), current["recipe"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            lines.append(f"{key}: {old.get(key)!r} in the checkpoint, {new.get(key)!r} now")
    if saved.get("data_sha256") != current["data_sha256"]:
        lines.append("the training data (tokenized) differs from the checkpoint's")
    for name, was in saved.get("versions", {}).items():
        if current["versions"].get(name) != was:
            lines.append(f"{name} {was} in the checkpoint, {current['versions'].get(name)} now")
    return lines
