"""Training features for finetune: from the feature cache when an entry matches, else tokenized
(in chunks, with progress) and stored for the next run. Nothing here prints: what the user should
read rides on the features' notes, and the progress display is the caller's. What happened is
returned for `--json`:

    {"train_rows": 1000000, "cache": "hit" | "miss" | "off", "featurize_s": 41.2}
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import replace
from pathlib import Path

from llmctl.data.inputs import local_files
from llmctl.events import Note

# Keys of the data section that never change the training features.
NOT_IN_KEY = ("validation", "test", "max_eval_samples", "cache")


def train_features(task, split, tokenizer, data_cfg, use_cache: bool, progress=None,
                   user_parallelism: str | None = None) -> tuple:
    """(features, info). The cache is used for a local training file; a Hub split is tokenized each run.
    The features' notes hold what the user should read (the caller shows them). `progress(total,
    label)`: a context manager called with (done, total) as rows are tokenized (the console's bar).
    `user_parallelism`: the TOKENIZERS_PARALLELISM the user set, if any (see parallel_tokenizing)."""
    import numpy as np

    from llmctl.data import cache
    from llmctl.data.store import is_columnar, to_columnar
    from llmctl.data.features import Features

    started = time.perf_counter()
    source = Path(data_cfg.train).expanduser() if data_cfg.train else None
    key, notes = None, []
    if use_cache and task.cacheable_features and local_files(data_cfg.train):
        settings = {k: v for k, v in data_cfg.model_dump(mode="json").items() if k not in NOT_IN_KEY}
        settings |= task.feature_settings()
        key = cache.make_key(task.name, "train", source, settings, tokenizer, task.tokenizer_kwargs())
        features = cache.lookup(key, notes)
        if features is not None:
            notes.append(f"features: {len(features):,} training rows from the cache ({cache.entries_dir() / key.digest})")
            # Tasks that decode generated ids read the tokenizer from their features; it is never stored.
            # What featurize had to say rides in meta["notes"] (notes themselves are never cached).
            features = replace(features, notes=tuple(Note(text, warning=True) for text in features.meta.get("notes", ())))
            return _told(features.with_tokenizer(tokenizer), notes), _info(features, "hit", started)
    with (progress or _no_progress)(len(split), "tokenizing the training data") as shown, \
            parallel_tokenizing(user_parallelism):
        features = task.featurize(split, tokenizer, progress=shown)
    features = Features({k: to_columnar(v) for k, v in features.columns.items()},
                        np.asarray(features.lengths, dtype=np.int32), features.meta, features.tokenizer,
                        features.notes)
    status = "off"
    if key is not None and is_columnar(features) and _json_safe(features.meta):
        status = "miss"
        if cache.write(key, features, notes):
            # Train from the entry just written, as a warm run does: the in-memory arrays
            # (~60 MB at 1M rows, 300 MB at 5M) are freed and only pages a step reads stay resident.
            features = _reload(cache.entries_dir() / key.digest, features)
    return _told(features, notes), _info(features, status, started)


def _reload(entry: Path, features):
    from llmctl.data import store

    try:
        return replace(store.load(entry), tokenizer=features.tokenizer, notes=features.notes)
    except (OSError, ValueError, KeyError):  # removed meanwhile (cache clear): keep the copy in memory
        return features


@contextlib.contextmanager
def parallel_tokenizing(user_setting: str | None = None):
    """Let a fast tokenizer spread each batch over every core while the training data is tokenized
    (~1.45x on 2 cores), unless the user set TOKENIZERS_PARALLELISM (`user_setting`, as the process
    started: llmctl.models.quiet.USER_TOKENIZERS_PARALLELISM). It is off again afterwards, as
    quiet_libraries leaves it for the rest of the run, so no later fork meets a used thread pool."""
    if user_setting is not None:
        yield
        return
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def _info(features, status: str, started: float) -> dict:
    return {"train_rows": len(features), "cache": status, "featurize_s": round(time.perf_counter() - started, 3)}


def _told(features, notes: list[str]):
    """`features` with the cache's lines added to what featurize had to say."""
    return replace(features, notes=tuple(features.notes) + tuple(Note(line) for line in notes))


@contextlib.contextmanager
def _no_progress(total: int, label: str):
    yield None


def _json_safe(meta) -> bool:
    import json

    try:
        json.dumps(meta)
        return True
    except (TypeError, ValueError):
        return False
