"""Matthews correlation coefficient from the confusion matrix (numpy only)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Multiclass Matthews correlation coefficient (Gorodkin's R_K statistic), the
same formula as sklearn.metrics.matthews_corrcoef. Ranges from -1 to +1; it is
0.0 when undefined (e.g. all references or all predictions are one class).
"""

_CITATION = """
@article{gorodkin2004comparing,
  title={Comparing two K-category assignments by a K-category correlation coefficient},
  author={Gorodkin, Jan},
  journal={Computational Biology and Chemistry},
  volume={28}, number={5-6}, pages={367--374}, year={2004}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted labels.
    references (list of int): ground-truth labels.
Returns:
    {"matthews_correlation": float}
"""


class MatthewsCorrelation(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions, references):
        classes, idx = np.unique(np.concatenate([references, predictions]), return_inverse=True)
        n = len(references)
        cm = np.zeros((len(classes), len(classes)), dtype=np.float64)
        np.add.at(cm, (idx[:n], idx[n:]), 1)
        # float64 throughout: the products below overflow int64 on large eval sets.
        t_sum, p_sum = cm.sum(axis=1), cm.sum(axis=0)
        total = cm.sum()
        cov_tp = np.trace(cm) * total - np.dot(t_sum, p_sum)
        cov_pp = total**2 - np.dot(p_sum, p_sum)
        cov_tt = total**2 - np.dot(t_sum, t_sum)
        if cov_pp * cov_tt == 0:
            return {"matthews_correlation": 0.0}
        return {"matthews_correlation": float(cov_tp / np.sqrt(cov_tt * cov_pp))}
