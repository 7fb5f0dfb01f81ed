"""SQuAD v2.0 metrics, as the official evaluate-v2.0.py computes them (stdlib only).

Unanswerable questions have no gold answer; predicting "" for them scores 1. With
`no_answer_probability` per question, a question counts as predicted unanswerable when
its value exceeds `na_prob_thresh` (official default 1.0), and `best_exact` / `best_f1`
report the best threshold found on this data (`best_*_thresh`). The values need not be
probabilities: llmctl passes null-score differences and its own threshold. Scores are
percentages (0-100); HasAns_* / NoAns_* break them down (NoAns_* only when such
questions exist, as in the official script).
"""

import collections
import re
import string

import datasets
import evaluate

_DESCRIPTION = """
Exact match and F1 over answerable and unanswerable questions, their HasAns / NoAns
breakdown, and the best no-answer threshold, as in the official SQuAD v2.0 script.
"""

_CITATION = """
@inproceedings{rajpurkar-etal-2018-know,
  title={Know What You Don't Know: Unanswerable Questions for {SQ}u{AD}},
  author={Rajpurkar, Pranav and Jia, Robin and Liang, Percy},
  booktitle={ACL}, year={2018}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of {"id": str, "prediction_text": str, "no_answer_probability": float}.
    references: list of {"id": str, "answers": {"text": [str, ...], "answer_start": [int, ...]}};
        empty lists mark an unanswerable question.
    na_prob_thresh (float): predicted unanswerable when no_answer_probability > this (default 1.0).
Returns:
    {"exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1",
     "NoAns_total", "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"}
"""

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text):
    """Lower text and remove punctuation, articles and extra whitespace (official v2.0)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def get_tokens(text):
    return normalize_answer(text).split() if text else []


def compute_exact(a_gold, a_pred):
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold, a_pred):
    gold_toks = get_tokens(a_gold)
    pred_toks = get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        # If either is no-answer, then F1 is 1 if they agree, 0 otherwise.
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def apply_no_ans_threshold(scores, na_probs, qid_to_has_ans, na_prob_thresh):
    new_scores = {}
    for qid, s in scores.items():
        pred_na = na_probs[qid] > na_prob_thresh
        new_scores[qid] = float(not qid_to_has_ans[qid]) if pred_na else s
    return new_scores


def make_eval_dict(exact_scores, f1_scores, qid_list=None):
    if not qid_list:
        total = len(exact_scores)
        return {"exact": 100.0 * sum(exact_scores.values()) / total,
                "f1": 100.0 * sum(f1_scores.values()) / total, "total": total}
    total = len(qid_list)
    return {"exact": 100.0 * sum(exact_scores[k] for k in qid_list) / total,
            "f1": 100.0 * sum(f1_scores[k] for k in qid_list) / total, "total": total}


def find_best_thresh(preds, scores, na_probs, qid_to_has_ans):
    num_no_ans = sum(1 for k in qid_to_has_ans if not qid_to_has_ans[k])
    cur_score = num_no_ans
    best_score = cur_score
    best_thresh = 0.0
    qid_list = sorted(na_probs, key=lambda k: na_probs[k])
    for qid in qid_list:
        if qid not in scores:
            continue
        if qid_to_has_ans[qid]:
            diff = scores[qid]
        else:
            diff = -1 if preds[qid] else 0
        cur_score += diff
        if cur_score > best_score:
            best_score = cur_score
            best_thresh = na_probs[qid]
    return 100.0 * best_score / len(scores), best_thresh


class SquadV2(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": {
                        "id": datasets.Value("string"),
                        "prediction_text": datasets.Value("string"),
                        "no_answer_probability": datasets.Value("float64"),
                    },
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

    def _compute(self, predictions, references, na_prob_thresh=1.0):
        preds = {p["id"]: p["prediction_text"] for p in predictions}
        na_probs = {p["id"]: p["no_answer_probability"] for p in predictions}
        qid_to_has_ans = {}
        exact_scores, f1_scores = {}, {}
        for ref in references:
            qid = ref["id"]
            if qid not in preds:
                raise ValueError(f"no prediction for question {qid}")
            qid_to_has_ans[qid] = bool(ref["answers"]["text"])
            gold_answers = [a for a in ref["answers"]["text"] if normalize_answer(a)]
            if not gold_answers:
                gold_answers = [""]  # for unanswerable questions, only the empty string is correct
            exact_scores[qid] = max(compute_exact(a, preds[qid]) for a in gold_answers)
            f1_scores[qid] = max(compute_f1(a, preds[qid]) for a in gold_answers)
        na_probs = {qid: p for qid, p in na_probs.items() if qid in qid_to_has_ans}  # prediction order
        exact_thresh = apply_no_ans_threshold(exact_scores, na_probs, qid_to_has_ans, na_prob_thresh)
        f1_thresh = apply_no_ans_threshold(f1_scores, na_probs, qid_to_has_ans, na_prob_thresh)
        out = make_eval_dict(exact_thresh, f1_thresh)
        has_ans = [k for k, v in qid_to_has_ans.items() if v]
        no_ans = [k for k, v in qid_to_has_ans.items() if not v]
        for prefix, qids in (("HasAns", has_ans), ("NoAns", no_ans)):
            if qids:
                part = make_eval_dict(exact_thresh, f1_thresh, qid_list=qids)
                out.update({f"{prefix}_{k}": v for k, v in part.items()})
        best_exact, exact_at = find_best_thresh(preds, exact_scores, na_probs, qid_to_has_ans)
        best_f1, f1_at = find_best_thresh(preds, f1_scores, na_probs, qid_to_has_ans)
        out.update({"best_exact": best_exact, "best_exact_thresh": float(exact_at),
                    "best_f1": best_f1, "best_f1_thresh": float(f1_at)})
        return out
