"""Training features for finetune: from the feature cache when an entry matches, else tokenized
(in chunks, with progress) and stored for the next run. What happened is returned for `--json`:

    {"train_rows": 1000000, "cache": "hit" | "miss" | "off", "featurize_s": 41.2}
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from llmctl.console import note, tell
from llmctl.data.inputs import local_files

# Keys of the data section that never change the training features.
NOT_IN_KEY = ("validation", "test", "max_eval_samples", "cache")


def train_features(task, split, tokenizer, data_cfg, use_cache: bool) -> tuple:
    """(features, info). The cache is used for a local training file; a Hub split is tokenized each run."""
    import numpy as np

    from llmctl.data import cache
    from llmctl.data.store import is_columnar, to_columnar
    from llmctl.data.features import Features

    started = time.perf_counter()
    source = Path(data_cfg.train).expanduser() if data_cfg.train else None
    key, notes = None, []
    if use_cache and task.cacheable_features and local_files(data_cfg.train):
        settings = {k: v for k, v in data_cfg.model_dump(mode="json").items() if k not in NOT_IN_KEY}
        key = cache.make_key(task.name, "train", source, settings, tokenizer, task.tokenizer_kwargs())
        features = cache.lookup(key, notes)
        _say(notes)
        if features is not None:
            note(f"features: {len(features):,} training rows from the cache ({cache.entries_dir() / key.digest})")
            # Tasks that decode generated ids read the tokenizer from their features; it is never stored.
            return features.with_tokenizer(tokenizer), _info(features, "hit", started)
    with Progress(len(split), "tokenizing the training data") as progress, parallel_tokenizing():
        features = task.featurize(split, tokenizer, progress=progress)
    tell(features)
    features = Features({k: to_columnar(v) for k, v in features.columns.items()},
                        np.asarray(features.lengths, dtype=np.int32), features.meta, features.tokenizer)
    status = "off"
    if key is not None and is_columnar(features) and _json_safe(features.meta):
        status = "miss"
        if cache.write(key, features, notes):
            # Train from the entry just written, as a warm run does: the in-memory arrays
            # (~60 MB at 1M rows, 300 MB at 5M) are freed and only pages a step reads stay resident.
            features = _reload(cache.entries_dir() / key.digest, features)
        _say(notes)
    return features, _info(features, status, started)


def _reload(entry: Path, features):
    from llmctl.data import store

    try:
        return store.load(entry).with_tokenizer(features.tokenizer)
    except (OSError, ValueError, KeyError):  # removed meanwhile (cache clear): keep the copy in memory
        return features


@contextlib.contextmanager
def parallel_tokenizing():
    """Let a fast tokenizer spread each batch over every core while the training data is tokenized
    (~1.45x on 2 cores), unless the user set TOKENIZERS_PARALLELISM. It is off again afterwards,
    as quiet_libraries leaves it for the rest of the run, so no later fork meets a used thread pool."""
    from llmctl.core.setup import USER_TOKENIZERS_PARALLELISM

    if USER_TOKENIZERS_PARALLELISM is not None:
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


def _say(notes: list[str]) -> None:
    for line in notes:
        note(line)
    notes.clear()


def _json_safe(meta) -> bool:
    import json

    try:
        json.dumps(meta)
        return True
    except (TypeError, ValueError):
        return False


class Progress:
    """Rows tokenized so far: a Rich bar (rows/s, ETA) on a terminal, a plain line every ~10% in logs."""

    def __init__(self, total: int, label: str):
        self.total, self.label = total, label
        self._bar = self._task = None
        self._next_line = 0.1
        self._started = time.perf_counter()

    def __enter__(self):
        from llmctl.console import is_main_rank

        if sys.stderr.isatty() and is_main_rank():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]} rows/s"), TimeRemainingColumn(),
                            console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, rate="-")
        return self

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.perf_counter() - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        if self._bar is not None:
            self._bar.update(self._task, completed=done, rate=f"{rate:,.0f}")
        elif done / max(total, 1) >= self._next_line or done == total:
            eta = (total - done) / rate if rate else 0.0
            note(f"{self.label}: {done:,}/{total:,} rows ({rate:,.0f} rows/s, eta {eta:.0f}s)")
            self._next_line = done / max(total, 1) + 0.1

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()
