"""Golden tests: the local metric modules must agree with scikit-learn/scipy
and must load without any network access."""

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

ROOT = Path(__file__).resolve().parents[2]
# The package is not necessarily installed into the venv; import it from the checkout.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from llmctl import metrics  # noqa: E402


@pytest.fixture(scope="module")
def m():
    return {name: metrics.load(name) for name in metrics.AVAILABLE}


def rng_labels(seed, n, k):
    rng = np.random.default_rng(seed)
    return rng.integers(0, k, n).tolist(), rng.integers(0, k, n).tolist()


def test_unknown_name_lists_available():
    with pytest.raises(ValueError) as err:
        metrics.load("meteor")
    for name in metrics.AVAILABLE:
        assert name in str(err.value)


def test_load_is_cached(m):
    assert metrics.load("f1") is m["f1"]


@pytest.mark.parametrize("seed", range(3))
def test_accuracy(m, seed):
    p, r = rng_labels(seed, 50, 3)
    w = np.random.default_rng(seed).random(50).tolist()
    acc = m["accuracy"]
    assert acc.compute(predictions=p, references=r) == {"accuracy": pytest.approx(skm.accuracy_score(r, p))}
    assert acc.compute(predictions=p, references=r, normalize=False)["accuracy"] == skm.accuracy_score(r, p, normalize=False)
    got = acc.compute(predictions=p, references=r, sample_weight=w)["accuracy"]
    assert got == pytest.approx(skm.accuracy_score(r, p, sample_weight=w))


@pytest.mark.parametrize(
    "p,r",
    [
        ([0, 1, 1, 0, 1], [0, 1, 0, 0, 1]),
        ([1, 1, 1, 1], [0, 1, 0, 1]),
        ([0, 0, 0], [0, 0, 0]),  # one class, pos_label absent: 0.0
        ([1, 1, 1], [1, 1, 1]),
        ([0, 0, 0], [1, 1, 1]),
    ],
)
def test_f1_binary(m, p, r):
    for pos in (0, 1):
        got = m["f1"].compute(predictions=p, references=r, pos_label=pos)
        assert got == {"f1": pytest.approx(skm.f1_score(r, p, pos_label=pos, zero_division=0.0))}
        assert type(got["f1"]) is float


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("average", ["micro", "macro", "weighted"])
def test_f1_multiclass(m, seed, average):
    p, r = rng_labels(seed, 60, 4)
    p[:5] = [7] * 5  # a class that only appears in predictions
    want = skm.f1_score(r, p, average=average, zero_division=0.0)
    assert m["f1"].compute(predictions=p, references=r, average=average)["f1"] == pytest.approx(want)
    sub = [0, 2, 9]  # explicit labels, one never seen
    want = skm.f1_score(r, p, labels=sub, average=average, zero_division=0.0)
    assert m["f1"].compute(predictions=p, references=r, labels=sub, average=average)["f1"] == pytest.approx(want)


def test_f1_rejects_binary_on_multiclass(m):
    with pytest.raises(ValueError, match="multiclass"):
        m["f1"].compute(predictions=[0, 1, 2], references=[0, 1, 2])
    with pytest.raises(ValueError, match="pos_label"):
        m["f1"].compute(predictions=[2, 3], references=[3, 2])
    # The shared instance must recover: no stale inputs, no lock-timeout stall.
    assert m["f1"].compute(predictions=[1, 0], references=[1, 1]) == {"f1": pytest.approx(2 / 3)}


@pytest.mark.parametrize(
    "p,r",
    [
        ([0, 1, 1, 0, 1, 0], [0, 1, 0, 0, 1, 1]),
        ([1, 0, 1], [1, 0, 1]),  # perfect: 1.0
        ([0, 1, 0, 1], [1, 0, 1, 0]),  # inverted: -1.0
        ([0, 0, 0, 0], [0, 1, 0, 1]),  # constant prediction: 0.0
        ([2, 2, 2], [2, 2, 2]),  # one class on both sides: 0.0
        ([0, 2, 1, 1, 2, 0, 3], [0, 1, 1, 2, 2, 0, 3]),
    ],
)
@pytest.mark.filterwarnings("ignore:A single label was found")
def test_mcc_handmade(m, p, r):
    got = m["matthews_correlation"].compute(predictions=p, references=r)["matthews_correlation"]
    assert got == pytest.approx(skm.matthews_corrcoef(r, p), abs=1e-12)


@pytest.mark.parametrize("seed,k", [(0, 2), (1, 3), (2, 5)])
def test_mcc_random(m, seed, k):
    p, r = rng_labels(seed, 80, k)
    got = m["matthews_correlation"].compute(predictions=p, references=r)["matthews_correlation"]
    assert got == pytest.approx(skm.matthews_corrcoef(r, p), abs=1e-12)


def f32(*arrays):
    # The modules declare float32 features, so compare against scipy on the
    # same float32-rounded values.
    return [np.asarray(a, dtype=np.float32) for a in arrays]


@pytest.mark.parametrize("seed", range(3))
def test_correlations_random(m, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=40)
    p, r = f32(x + rng.normal(scale=0.5, size=40), x)
    got = m["pearsonr"].compute(predictions=p, references=r)["pearson"]
    assert got == pytest.approx(stats.pearsonr(p, r)[0], abs=1e-6)
    got = m["spearmanr"].compute(predictions=p, references=r)["spearmanr"]
    assert got == pytest.approx(stats.spearmanr(p, r)[0], abs=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_spearman_ties(m, seed):
    rng = np.random.default_rng(seed)
    p, r = f32(rng.integers(0, 4, 30), rng.integers(0, 3, 30) * 0.5)
    got = m["spearmanr"].compute(predictions=p, references=r)["spearmanr"]
    assert got == pytest.approx(stats.spearmanr(p, r)[0], abs=1e-6)


def test_correlations_handmade(m):
    p, r = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.5]
    assert m["pearsonr"].compute(predictions=p, references=r)["pearson"] == pytest.approx(stats.pearsonr(p, r)[0])
    assert m["spearmanr"].compute(predictions=p, references=r)["spearmanr"] == 1.0
    assert m["spearmanr"].compute(predictions=p, references=r[::-1])["spearmanr"] == -1.0


def test_correlations_undefined_are_nan(m):
    # Constant input: scipy warns and returns nan; we return nan silently.
    for p, r in [([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]), ([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])]:
        assert math.isnan(m["pearsonr"].compute(predictions=p, references=r)["pearson"])
        assert math.isnan(m["spearmanr"].compute(predictions=p, references=r)["spearmanr"])


def test_load_with_network_blocked(monkeypatch, m):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    metrics.load.cache_clear()
    loaded = [metrics.load(name) for name in metrics.AVAILABLE]
    assert loaded[0].compute(predictions=[1, 0], references=[1, 1]) == {"accuracy": 0.5}
    assert attempts == []


_OFFLINE_SCRIPT = textwrap.dedent(
    """
    import json, socket, sys, time

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    socket.socket.connect = socket.socket.connect_ex = socket.getaddrinfo = refuse
    from llmctl import metrics
    lazy = "evaluate" not in sys.modules and "torch" not in sys.modules
    import evaluate  # timed separately: its import is slow but offline-safe
    start = time.perf_counter()
    out = {n: metrics.load(n).compute(predictions=[0, 1, 1], references=[0, 1, 0]) for n in metrics.AVAILABLE}
    print(json.dumps({"lazy": lazy, "seconds": time.perf_counter() - start, "out": out}))
    """
)


@pytest.fixture(scope="module", autouse=True)
def offline_proc(tmp_path_factory):
    # Started before the other tests so its slow `import evaluate` overlaps
    # with ours; this keeps the file well under 10 s.
    home = tmp_path_factory.mktemp("hf_home")
    # HF_HOME in tmp: nothing may come from a cache an earlier online run filled.
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(home), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", _OFFLINE_SCRIPT], env=env, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_load_offline_fresh_cache_subprocess(offline_proc):
    stdout, stderr = offline_proc.communicate(timeout=120)
    assert offline_proc.returncode == 0, stderr
    res = json.loads(stdout.strip().splitlines()[-1])
    assert res["lazy"], "importing llmctl.metrics must not import evaluate/torch"
    assert res["out"]["accuracy"] == {"accuracy": pytest.approx(2 / 3)}
    assert set(res["out"]) == set(metrics.AVAILABLE)
