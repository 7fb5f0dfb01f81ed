"""Entity-level precision, recall and F1 (seqeval), strict IOB2 by default, plus token accuracy."""

import datasets
import evaluate
from seqeval.metrics import accuracy_score
from seqeval.metrics import classification_report
from seqeval.scheme import IOB2

_DESCRIPTION = """
An entity counts as found only when its type and its exact span (first and last token)
match a reference entity. In strict IOB2 mode (the default here) an entity must open with
B-TYPE: a sequence such as `O I-PER I-PER` holds no entity. mode=None is seqeval's lenient
default, compatible with conlleval.pl, where that I-PER opens a PER entity.
Token accuracy is the fraction of tokens whose tag equals the reference tag.
"""

_CITATION = """
@misc{seqeval,
  title={{seqeval}: A Python framework for sequence labeling evaluation},
  url={https://github.com/chakki-works/seqeval},
  author={Hiroki Nakayama},
  year={2018}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of list of str): predicted tags, one list per sentence.
    references (list of list of str): reference tags, same shape.
    mode (str or None): "strict" (default) or None for the lenient conlleval behaviour.
    scheme (str): tagging scheme in strict mode, "IOB2" (default).
    zero_division (0 or 1): value of a ratio whose denominator is zero (default 0).
Returns:
    {"precision", "recall", "f1", "accuracy"} (micro-averaged over entities; accuracy over
    tokens) plus, for every entity type X, "X_precision", "X_recall", "X_f1" and "X_number"
    (the count of reference X entities).
"""


class Seqeval(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("string")),
                "references": datasets.Sequence(datasets.Value("string")),
            }),
        )

    def _compute(self, predictions, references, mode="strict", scheme="IOB2", zero_division=0):
        if scheme != "IOB2":
            raise ValueError(f"scheme must be 'IOB2', got {scheme!r}")
        if mode not in ("strict", None):
            raise ValueError(f"mode must be 'strict' or None, got {mode!r}")
        for pred, ref in zip(predictions, references):
            if len(pred) != len(ref):
                raise ValueError(f"a prediction has {len(pred)} tags but its reference has {len(ref)}")
        extra = {"mode": "strict", "scheme": IOB2} if mode == "strict" else {}
        report = classification_report(references, predictions, output_dict=True,
                                       zero_division=zero_division, **extra)
        micro = report.pop("micro avg")
        out = {
            "precision": float(micro["precision"]),
            "recall": float(micro["recall"]),
            "f1": float(micro["f1-score"]),
            "accuracy": float(accuracy_score(references, predictions)),
        }
        for name in ("macro avg", "weighted avg"):
            report.pop(name, None)
        for kind in sorted(report):
            scores = report[kind]
            out[f"{kind}_precision"] = float(scores["precision"])
            out[f"{kind}_recall"] = float(scores["recall"])
            out[f"{kind}_f1"] = float(scores["f1-score"])
            out[f"{kind}_number"] = int(scores["support"])
        return out
