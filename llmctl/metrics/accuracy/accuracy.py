"""Accuracy: fraction of predictions equal to the references (numpy only)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Accuracy = (number of correct predictions) / (number of predictions).
With `normalize=False` the count of correct predictions is returned instead.
"""

_CITATION = """
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and others},
  journal={Journal of Machine Learning Research},
  volume={12}, pages={2825--2830}, year={2011}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted labels.
    references (list of int): ground-truth labels.
    normalize (bool): return the fraction (default) or the count of correct ones.
    sample_weight (list of float, optional): per-sample weights.
Returns:
    {"accuracy": float}
"""


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        correct = np.asarray(predictions) == np.asarray(references)
        w = np.ones(correct.shape) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        score = np.dot(correct, w)
        return {"accuracy": float(score / w.sum() if normalize else score)}
