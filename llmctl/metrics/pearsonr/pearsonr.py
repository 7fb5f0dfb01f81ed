"""Pearson correlation coefficient (numpy only)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Pearson product-moment correlation between predictions and references, in
[-1, 1]. Like scipy.stats.pearsonr, the result is nan when it is undefined
(fewer than two points, or either side has zero variance); we keep nan rather
than 0.0 so that a constant predictor is not mistaken for an uncorrelated one.
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
    {"pearson": float}  (nan when undefined)
"""


def pearson(x, y):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) < 2:
        return float("nan")
    xm, ym = x - x.mean(), y - y.mean()
    nx, ny = np.linalg.norm(xm), np.linalg.norm(ym)
    if nx == 0 or ny == 0:
        return float("nan")
    # Normalising before the dot product (as scipy does) avoids overflow and
    # keeps |r| <= 1 up to rounding; the clip removes that rounding.
    return float(np.clip(np.dot(xm / nx, ym / ny), -1.0, 1.0))


class Pearsonr(evaluate.Metric):
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
        return {"pearson": pearson(predictions, references)}
