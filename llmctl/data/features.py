"""Features: what a task's featurize returns and the feature store keeps, one typed value that
the data, the tasks and the loop all pass around (it lives beside the store that writes it)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass
class Features:
    """Columns of tokenized features (lists or columnar arrays of equal length), the token count of
    each row, and what featurize learned that later steps need: `meta` (JSON-safe, stored with a
    cache entry: pad side, label maps, ...) and the tokenizer that made them (never cached; tasks
    that decode generated ids read it here rather than keeping it on `self`). `notes`: what
    featurize has to tell the user (llmctl.tasks.base.Note), shown by the caller, never cached."""

    columns: dict[str, list]
    lengths: list[int]
    meta: dict = field(default_factory=dict)
    tokenizer: Any = field(default=None, repr=False, compare=False)
    notes: tuple = field(default=(), repr=False, compare=False)

    def with_tokenizer(self, tokenizer) -> "Features":
        return replace(self, tokenizer=tokenizer)

    def __len__(self) -> int:
        return len(self.lengths)

    def rows(self, indices) -> list[dict]:
        return [{name: col[i] for name, col in self.columns.items()} | {"index": int(i)} for i in indices]
