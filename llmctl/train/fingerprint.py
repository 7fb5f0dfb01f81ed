"""What a checkpoint must match to be resumed: the recipe, the training, validation and test data,
the libraries.

A resumed run only continues the original if all are the same (a changed validation file would
make best-model selection compare metrics of two validation sets); otherwise the
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


def fingerprint(recipe, train_features, eval_features=None, test_file=None) -> dict:
    """`eval_features`: the tokenized validation split; `test_file`: data.test when it is a local
    file (its bytes: the test split is tokenized only after training)."""
    from importlib.metadata import version

    from llmctl.files import file_sha256

    recipe_flat = {k: v for k, v in flatten(recipe.model_dump(mode="json")).items() if k not in HARMLESS}
    found = {"recipe": recipe_flat, "data_sha256": features_sha256(train_features),
             "versions": {name: version(name) for name in LIBRARIES}}
    if getattr(recipe, "peft", None) is not None:  # the adapter's layers and its saved state are peft's
        found["versions"]["peft"] = version("peft")
    if eval_features is not None:
        found["validation_sha256"] = features_sha256(eval_features)
    if test_file is not None:
        found["test_sha256"] = file_sha256(test_file)
    return found


def features_sha256(features) -> str:
    import numpy as np

    from llmctl.data.store import Ragged

    digest = hashlib.sha256()
    for name in sorted(features.columns):
        digest.update(name.encode())
        column = features.columns[name]
        if isinstance(column, Ragged):  # values as int64, so the narrow storage type never matters
            _update(digest, column.values, np.int64)
            _update(digest, column.offsets, np.int64)
        elif isinstance(column, np.ndarray):
            _update(digest, column, np.float64 if column.dtype.kind == "f" else np.int64)
        else:
            digest.update(json.dumps(column, separators=(",", ":")).encode())
    return digest.hexdigest()


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
    # Checkpoints written before these keys existed are not refused for lacking them.
    for key, what in (("validation_sha256", "the validation data (tokenized)"), ("test_sha256", "the test data file")):
        if key in saved and saved[key] != current.get(key):
            lines.append(f"{what} differs from the checkpoint's")
    for name, was in saved.get("versions", {}).items():
        if current["versions"].get(name) != was:
            lines.append(f"{name} {was} in the checkpoint, {current['versions'].get(name)} now")
    return lines
