"""Spearman rank correlation (numpy only)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Spearman's rho: the Pearson correlation of the ranks, with tied values given
their average rank (as scipy.stats.spearmanr). nan when undefined (fewer than
two points, or either side is constant), like scipy.
"""

_CITATION = """
@article{2020SciPy-NMeth,
  title={{SciPy} 1.0: Fundamental Algorithms for Scientific Computing in Python},
  author={Virtanen, Pauli and others},
  journal={Nature Methods}, volume={17}, pages={261--272}, year={2020}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of float): predicted scores.
    references (list of float): ground-truth scores.
Returns:
    {"spearmanr": float}  (nan when undefined)
"""


def average_ranks(x):
    _, inverse, counts = np.unique(np.asarray(x), return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)  # 1-based rank of the last member of each tie group
    return (upper - (counts - 1) / 2.0)[inverse]


# Same as pearsonr.pearson: evaluate copies each metric script on its own,
# so one local module cannot import another.
def pearson(x, y):
    if len(x) < 2:
        return float("nan")
    xm, ym = x - x.mean(), y - y.mean()
    nx, ny = np.linalg.norm(xm), np.linalg.norm(ym)
    if nx == 0 or ny == 0:
        return float("nan")
    return float(np.clip(np.dot(xm / nx, ym / ny), -1.0, 1.0))


class Spearmanr(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float32"), "references": datasets.Value("float32")}
            ),
        )

    def _compute(self, predictions, references):
        return {"spearmanr": pearson(average_ranks(predictions), average_ranks(references))}
