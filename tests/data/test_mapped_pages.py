"""Pages of the memory-mapped feature store a run has read leave its RSS when released: a step's
few rows fault in up to 64 KB around each page they touch, so without it the resident share of a
large corpus's token files grows with the corpus (bench/corpus.py measures the whole run)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from llmctl.data.features import Features
from llmctl.data.store import Ragged, load, release_features, save
from llmctl.train.batching import epoch_batches

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")


def resident_kb(directory) -> int:
    """Resident kB of this process's mappings of files under `directory`."""
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split(maxsplit=1)[0]
            if "-" in head and all(c in "0123456789abcdef-" for c in head):
                inside = str(directory) in line
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


def test_rows_read_for_steps_and_whole_columns_leave_rss_when_released(tmp_path):
    tokens, block = 4_000_000, 64
    values = (np.arange(tokens) % 30_000).astype(np.uint16)
    offsets = np.append(np.arange(0, tokens, block, dtype=np.int64), tokens)
    save(Features({"input_ids": Ragged(values, offsets)}, np.full(len(offsets) - 1, block, np.int32)), tmp_path)
    features = load(tmp_path)
    assert resident_kb(tmp_path) == 0
    batches = epoch_batches(features.lengths, 8, 42, 0, group_by_length=True)  # reads every length
    for batch in batches[:50]:  # what 50 steps of 8 rows read: their tokens, copied out
        rows = features.rows(batch)
        assert all(len(np.array(row["input_ids"])) == block for row in rows)
    features.lengths.sum()  # a whole-column read, as setup's checks make
    before = resident_kb(tmp_path)
    assert before > 400  # 400 rows at random fault in far more than their own 400 x 128 bytes
    release_features(features)
    assert resident_kb(tmp_path) == 0
    assert np.array_equal(features.columns["input_ids"][3], values[3 * block : 4 * block])  # still readable
