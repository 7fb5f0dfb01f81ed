"""Batch order, length grouping, sharding and the learning-rate schedule (pure functions)."""

import pytest

from llmctl.train.batching import epoch_batches, eval_batches, shard
from llmctl.train.optim import lr_factor

LENGTHS = [((i * 37) % 50) + 3 for i in range(1000)]


def padding(batches):
    return sum(max(LENGTHS[i] for i in b) * len(b) - sum(LENGTHS[i] for i in b) for b in batches)


@pytest.mark.parametrize("group", [True, False])
def test_every_example_once_per_epoch_and_order_depends_on_seed_and_epoch(group):
    batches = epoch_batches(LENGTHS, 32, seed=1, epoch=0, group_by_length=group)
    assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))
    assert batches == epoch_batches(LENGTHS, 32, seed=1, epoch=0, group_by_length=group)
    assert batches != epoch_batches(LENGTHS, 32, seed=1, epoch=1, group_by_length=group)
    assert batches != epoch_batches(LENGTHS, 32, seed=2, epoch=0, group_by_length=group)


def test_grouping_cuts_padding_and_puts_longest_batch_first():
    grouped = epoch_batches(LENGTHS, 32, seed=0, epoch=0, group_by_length=True)
    shuffled = epoch_batches(LENGTHS, 32, seed=0, epoch=0, group_by_length=False)
    assert padding(grouped) < padding(shuffled) / 5
    assert max(LENGTHS[i] for i in grouped[0]) == max(LENGTHS)


def test_shards_cover_a_batch_and_top_up_evenly():
    batch = list(range(13))
    parts = [shard(batch, r, 2) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 7
    assert set(parts[0]) | set(parts[1]) == set(batch)
    assert shard(batch, 0, 1) == batch


def test_eval_batches_sorted_and_complete():
    batches = eval_batches(LENGTHS, 64)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(LENGTHS)))
    assert [LENGTHS[i] for i in flat] == sorted(LENGTHS, reverse=True)


def test_schedules():
    assert lr_factor(0, 100, 10, "linear") == 0.0
    assert lr_factor(5, 100, 10, "linear") == 0.5
    assert lr_factor(10, 100, 10, "linear") == 1.0
    assert lr_factor(55, 100, 10, "linear") == pytest.approx(0.5)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "cosine") == pytest.approx(0.0)
    assert lr_factor(80, 100, 10, "constant") == 1.0
