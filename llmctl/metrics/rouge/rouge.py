"""ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum F-measures, as Google's rouge_score computes them (stdlib only).

Texts are lower-cased and split into runs of letters and digits (rouge_score's default
tokenizer, without stemming; unlike it, non-ASCII letters count as letters, so text in
other scripts is not silently dropped). Each prediction is scored against its reference
and the per-example F-measures are averaged (a plain mean, not rouge_score's bootstrap
median, so the figure is deterministic). Scores are fractions in [0, 1], like the
`rouge` metric on the Hub. ROUGE-Lsum treats each line as a sentence (summary-level
union LCS); put one sentence per line to use it.
"""

import collections
import re

import datasets
import evaluate

_DESCRIPTION = """
ROUGE-N: F-measure of the n-grams shared by prediction and reference (clipped counts).
ROUGE-L: F-measure of their longest common subsequence of tokens.
ROUGE-Lsum: ROUGE-L at summary level, one sentence per line (union LCS over sentences).
"""

_CITATION = """
@inproceedings{lin-2004-rouge,
  title={{ROUGE}: A Package for Automatic Evaluation of Summaries},
  author={Lin, Chin-Yew},
  booktitle={Text Summarization Branches Out}, year={2004}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated texts.
    references (list of str): one reference text per prediction.
Returns:
    {"rouge1": float, "rouge2": float, "rougeL": float, "rougeLsum": float}  (fractions, mean over examples)
"""

_NON_ALNUM = re.compile(r"[\W_]+", re.UNICODE)


def tokenize(text):
    return _NON_ALNUM.sub(" ", text.lower()).split()


def fmeasure(hits, predicted, reference):
    precision = hits / predicted if predicted else 0.0
    recall = hits / reference if reference else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def rouge_n(pred, ref, n):
    pred_grams = collections.Counter(tuple(pred[i : i + n]) for i in range(len(pred) - n + 1))
    ref_grams = collections.Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
    hits = sum((pred_grams & ref_grams).values())
    return fmeasure(hits, sum(pred_grams.values()), sum(ref_grams.values()))


def lcs_table(ref, pred):
    table = [[0] * (len(pred) + 1) for _ in range(len(ref) + 1)]
    for i in range(1, len(ref) + 1):
        for j in range(1, len(pred) + 1):
            if ref[i - 1] == pred[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    return table


def rouge_l(pred, ref):
    if not pred or not ref:
        return 0.0
    return fmeasure(lcs_table(ref, pred)[-1][-1], len(pred), len(ref))


def lcs_positions(ref, pred):
    """Positions in `ref` of one longest common subsequence, backtracked as rouge_score does."""
    table = lcs_table(ref, pred)
    i, j, out = len(ref), len(pred), []
    while i > 0 and j > 0:
        if ref[i - 1] == pred[j - 1]:
            out.append(i - 1)
            i, j = i - 1, j - 1
        elif table[i][j - 1] > table[i - 1][j]:
            j -= 1
        else:
            i -= 1
    return out


def rouge_lsum(pred_text, ref_text):
    preds = [tokenize(line) for line in pred_text.split("\n") if line.strip()]
    refs = [tokenize(line) for line in ref_text.split("\n") if line.strip()]
    preds, refs = [s for s in preds if s], [s for s in refs if s]
    predicted, reference = sum(map(len, preds)), sum(map(len, refs))
    if not predicted or not reference:
        return 0.0
    pred_left = collections.Counter(t for s in preds for t in s)
    ref_left = collections.Counter(t for s in refs for t in s)
    hits = 0
    for sentence in refs:
        union = sorted(set().union(*(lcs_positions(sentence, p) for p in preds)))
        for token in (sentence[k] for k in union):
            # A token counts at most as often as it occurs on both sides.
            if pred_left[token] > 0 and ref_left[token] > 0:
                hits += 1
                pred_left[token] -= 1
                ref_left[token] -= 1
    return fmeasure(hits, predicted, reference)


def score(prediction, reference):
    pred, ref = tokenize(prediction), tokenize(reference)
    return {"rouge1": rouge_n(pred, ref, 1), "rouge2": rouge_n(pred, ref, 2),
            "rougeL": rouge_l(pred, ref), "rougeLsum": rouge_lsum(prediction, reference)}


class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        totals = dict.fromkeys(("rouge1", "rouge2", "rougeL", "rougeLsum"), 0.0)
        for prediction, reference in zip(predictions, references):
            for name, value in score(prediction, reference).items():
                totals[name] += value
        count = max(len(predictions), 1)
        return {name: value / count for name, value in totals.items()}
