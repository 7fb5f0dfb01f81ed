"""Corpus BLEU as sacrebleu computes it by default (stdlib only).

Defaults of `sacrebleu.corpus_bleu`: the `13a` tokenizer (mteval-v13a), case-sensitive,
n-grams up to 4 with clipped counts summed over the whole corpus, `exp` smoothing of
empty n-gram orders, and the brevity penalty from the summed lengths (closest reference
length per sentence, the shorter on a tie). The score is 0-100, like sacrebleu.
"""

import collections
import math
import re

import datasets
import evaluate

_DESCRIPTION = """
BLEU = BP * exp(mean over n=1..4 of log p_n), p_n = clipped matching n-grams / predicted n-grams,
BP = exp(1 - reference length / prediction length) when the prediction is shorter, else 1.
"""

_CITATION = """
@inproceedings{post-2018-call,
  title={A Call for Clarity in Reporting {BLEU} Scores},
  author={Post, Matt},
  booktitle={Proceedings of the Third Conference on Machine Translation}, year={2018}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated texts.
    references (list of list of str): one or more reference texts per prediction.
Returns:
    {"bleu": float (0-100), "precisions": [p1..p4] (0-100), "brevity_penalty": float,
     "sys_len": int, "ref_len": int}
"""

MAX_ORDER = 4
# mteval-v13a: punctuation and symbols become tokens; periods and commas too, except inside numbers.
_RULES = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
]


def tokenize_13a(line):
    line = line.rstrip().replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    line = f" {line} "
    for pattern, replacement in _RULES:
        line = pattern.sub(replacement, line)
    return line.split()


def ngrams(tokens):
    return collections.Counter(
        tuple(tokens[i : i + n]) for n in range(1, MAX_ORDER + 1) for i in range(len(tokens) - n + 1)
    )


def corpus_bleu(predictions, references):
    correct, total = [0] * MAX_ORDER, [0] * MAX_ORDER
    sys_len = ref_len = 0
    for prediction, refs in zip(predictions, references):
        pred = tokenize_13a(prediction)
        ref_tokens = [tokenize_13a(r) for r in refs]
        sys_len += len(pred)
        ref_len += min((abs(len(r) - len(pred)), len(r)) for r in ref_tokens)[1]
        best = collections.Counter()  # max count of each n-gram over the references
        for r in ref_tokens:
            best |= ngrams(r)
        for gram, count in ngrams(pred).items():
            total[len(gram) - 1] += count
            correct[len(gram) - 1] += min(count, best[gram])
    if sys_len < ref_len:
        penalty = math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
    else:
        penalty = 1.0
    precisions, smooth = [0.0] * MAX_ORDER, 1.0
    if not any(correct):  # nothing matches: 0, not a smoothed score (sacrebleu issue #141)
        return {"bleu": 0.0, "precisions": precisions, "brevity_penalty": penalty,
                "sys_len": sys_len, "ref_len": ref_len}
    for n in range(MAX_ORDER):
        if total[n] == 0:
            break
        if correct[n] == 0:  # exp smoothing: halve the credit for each further empty order
            smooth *= 2
            precisions[n] = 100.0 / (smooth * total[n])
        else:
            precisions[n] = 100.0 * correct[n] / total[n]
    logs = [math.log(p) if p > 0 else -9999999999 for p in precisions]
    score = penalty * math.exp(sum(logs) / MAX_ORDER)
    return {"bleu": score, "precisions": precisions, "brevity_penalty": penalty,
            "sys_len": sys_len, "ref_len": ref_len}


class Bleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("string"),
                                   "references": datasets.List(datasets.Value("string"))}),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
        )

    def _compute(self, predictions, references):
        references = [[r] if isinstance(r, str) else list(r) for r in references]
        return corpus_bleu(predictions, references)
