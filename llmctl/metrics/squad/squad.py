"""SQuAD v1.1 exact match and F1, as the official evaluate-v1.1.py computes them (stdlib only).

Each prediction is scored against every gold answer of its question and keeps the best;
answers are normalised first (lower case, no punctuation, no articles a/an/the, single
spaces). Scores are percentages (0-100), like the official script.
"""

import collections
import re
import string

import datasets
import evaluate

_DESCRIPTION = """
Exact match: percentage of questions whose normalised prediction equals a normalised gold answer.
F1: token overlap between normalised prediction and the best-matching gold answer, averaged.
"""

_CITATION = """
@inproceedings{rajpurkar-etal-2016-squad,
  title={{SQ}u{AD}: 100,000+ Questions for Machine Comprehension of Text},
  author={Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy},
  booktitle={EMNLP}, year={2016}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of {"id": str, "prediction_text": str}.
    references: list of {"id": str, "answers": {"text": [str, ...], "answer_start": [int, ...]}}.
Returns:
    {"exact_match": float, "f1": float}  (percentages)
"""

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text):
    """Lower text and remove punctuation, articles and extra whitespace (official v1.1)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def f1_score(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction, ground_truth):
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    return max(metric_fn(prediction, gt) for gt in ground_truths)


class Squad(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
                    "references": {
                        "id": datasets.Value("string"),
                        "answers": {
                            "text": datasets.List(datasets.Value("string")),
                            "answer_start": datasets.List(datasets.Value("int32")),
                        },
                    },
                }
            ),
        )

    def _compute(self, predictions, references):
        by_id = {p["id"]: p["prediction_text"] for p in predictions}
        exact = f1 = 0.0
        for ref in references:
            golds = list(ref["answers"]["text"])
            if not golds:
                raise ValueError(f"question {ref['id']} has no gold answer; SQuAD v1.1 needs one (use squad_v2).")
            if ref["id"] not in by_id:
                raise ValueError(f"no prediction for question {ref['id']}")
            exact += metric_max_over_ground_truths(exact_match_score, by_id[ref["id"]], golds)
            f1 += metric_max_over_ground_truths(f1_score, by_id[ref["id"]], golds)
        total = len(references)
        return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total}
