"""Tokenizers trained on a training split (model.tokenizer.train), kept next to the feature cache so a
second run of the same recipe on the same data loads the tokenizer instead of training it again:

    $LLMCTL_CACHE_DIR/tokenizers/<key>/   tokenizer.json, tokenizer_config.json, ... (save_pretrained)

The key is what determines the tokenizer: the training files' bytes (or the Hub split's name), the data
settings that pick the text, the tokenizer spec and family, and the library versions. An entry is
written to a temporary folder and renamed into place, so a reader never sees half of one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from llmctl.data.cache import cache_root
from llmctl.data.inputs import local_files, source_fingerprint

# The data keys that choose which text the tokenizer is trained on.
TEXT_KEYS = ("dataset", "config", "train", "revision", "text_column", "text_split", "max_train_samples",
             "column_names", "skip_empty")


def tokenizers_dir() -> Path:
    return cache_root() / "tokenizers"


def key(spec: dict, family: str, data_cfg) -> str:
    import tokenizers

    from llmctl import __version__

    data = data_cfg.model_dump(mode="json")
    parts = {"spec": spec, "family": family, "llmctl": __version__, "tokenizers": tokenizers.__version__,
             "data": {k: data.get(k) for k in TEXT_KEYS},
             "source": source_fingerprint(data_cfg.train) if local_files(data_cfg.train) else data_cfg.train}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def trained_tokenizer(spec, family: str, data_cfg, texts: Callable[[], Iterable[str]], where: str,
                      use_cache: bool = True) -> tuple[Path, bool]:
    """(the folder of the trained tokenizer, whether it came from the cache). `texts()` streams the
    training text; it is only called on a miss."""
    from llmctl.models.tokenizer_train import train

    entry = tokenizers_dir() / key(spec.model_dump(mode="json"), family, data_cfg)
    if use_cache and (entry / "tokenizer.json").is_file():
        return entry, True
    tokenizer = train(spec.train, spec.vocab_size, spec.min_frequency, family, texts(), where)
    tokenizers_dir().mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=tokenizers_dir()))
    tokenizer.save_pretrained(str(temp))
    try:
        if entry.exists():
            shutil.rmtree(entry)
        temp.rename(entry)
    except OSError:  # another run put the same entry in place meanwhile: theirs is as good
        shutil.rmtree(temp, ignore_errors=True)
    return entry, False
