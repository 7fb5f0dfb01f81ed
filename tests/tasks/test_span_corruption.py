"""T5 span corruption (task denoising): on a large sample the hidden share and the span lengths are
the configured ones, every block is recoverable from its input and target, and the draw depends on
(seed, epoch, index) alone."""

import numpy as np
import pytest

from llmctl.tasks.masking import example_rng
from llmctl.tasks.span_corruption import corrupt, noise_mask

SENTINELS = np.arange(1000, 1100)
EOS = 1


def spans(mask: np.ndarray) -> list[int]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    return list(edges[1::2] - edges[::2])


@pytest.mark.parametrize("density,mean_span", [(0.15, 3.0), (0.3, 5.0)])
def test_noise_density_and_mean_span_length_on_a_large_sample(density, mean_span):
    # 512-token blocks (T5's input length): the span count is rounded per block, as T5 does, so short
    # blocks drift from the mean (128 tokens: 19 hidden in 6 spans, 3.17)
    hidden, lengths = 0, []
    for index in range(1000):
        mask = noise_mask(512, density, mean_span, example_rng(0, 42, 0, index))
        hidden += int(mask.sum())
        lengths += spans(mask)
    assert hidden / (1000 * 512) == pytest.approx(density, abs=0.005)
    assert np.mean(lengths) == pytest.approx(mean_span, rel=0.05)
    assert min(lengths) >= 1


def test_input_and_target_together_give_back_the_block():
    rng = np.random.default_rng(0)
    for index in range(200):
        tokens = rng.integers(10, 900, size=64)
        mask = noise_mask(64, 0.15, 3.0, example_rng(0, 1, 2, index))
        inputs, targets = corrupt(tokens, mask, SENTINELS, EOS)
        assert inputs[-1] == EOS and targets[-1] == EOS
        # each sentinel in the input stands for the tokens that follow it in the target
        filled, pieces = [], {}
        current = None
        for t in targets[:-1]:
            if t in SENTINELS:
                current = int(t)
                pieces[current] = []
            else:
                pieces[current].append(int(t))
        for t in inputs[:-1]:
            filled += pieces[int(t)] if t in SENTINELS else [int(t)]
        assert filled == tokens.tolist()
        assert sum(t in SENTINELS for t in inputs) == len(spans(mask))


def test_the_draw_depends_on_seed_epoch_and_index_only():
    first = noise_mask(100, 0.15, 3.0, example_rng(0, 42, 3, 7))
    assert (noise_mask(100, 0.15, 3.0, example_rng(0, 42, 3, 7)) == first).all()
    others = [noise_mask(100, 0.15, 3.0, example_rng(0, 42, 4, 7)), noise_mask(100, 0.15, 3.0, example_rng(0, 43, 3, 7))]
    assert all((other != first).any() for other in others)
