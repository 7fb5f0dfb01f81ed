"""F1 score computed from per-class counts (numpy only, matches sklearn)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
F1 = 2 * TP / (2 * TP + FP + FN), the harmonic mean of precision and recall.
A class with 2 * TP + FP + FN == 0 scores 0.0 (sklearn's zero_division default).
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
    labels (list of int, optional): classes to average over (default: all seen).
    pos_label (int): the positive class when average="binary" (default 1).
    average (str): "binary" (default), "micro", "macro" or "weighted", as in sklearn.
Returns:
    {"f1": float}
"""


class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions, references, labels=None, pos_label=1, average="binary"):
        pred, ref = np.asarray(predictions), np.asarray(references)
        present = np.union1d(pred, ref)
        if average == "binary":
            # Same guards as sklearn: silently scoring one class of a
            # multiclass problem would hide a misconfigured task.
            if len(present) > 2:
                raise ValueError(f"average='binary' but labels are multiclass {present.tolist()}; pick micro/macro/weighted")
            if len(present) == 2 and pos_label not in present:
                raise ValueError(f"pos_label={pos_label} is not a valid label: {present.tolist()}")
            labels = [pos_label]
        elif average not in ("micro", "macro", "weighted"):
            raise ValueError(f"average must be binary, micro, macro or weighted, got {average!r}")
        labels = present if labels is None else np.asarray(labels)

        tp = np.array([np.sum((pred == c) & (ref == c)) for c in labels], dtype=np.float64)
        n_pred = np.array([np.sum(pred == c) for c in labels], dtype=np.float64)
        n_true = np.array([np.sum(ref == c) for c in labels], dtype=np.float64)
        if average == "micro":
            tp, n_pred, n_true = tp.sum(keepdims=True), n_pred.sum(keepdims=True), n_true.sum(keepdims=True)
        denom = n_pred + n_true  # == 2TP + FP + FN
        f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
        if average == "weighted":
            return {"f1": float(np.dot(f1, n_true) / n_true.sum()) if n_true.sum() > 0 else 0.0}
        return {"f1": float(f1.mean())}
