"""ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum F-measures through Google's `rouge_score`.

Each prediction is scored against its reference with `rouge_scorer.RougeScorer` (its own
tokenizer: lower-cased runs of ASCII letters and digits; `use_stemmer=True` adds the Porter
stemmer, as run_summarization does) and the per-example F-measures are averaged: a plain mean,
not the bootstrap median of the Hub's `rouge` module, so the figure is deterministic.

ROUGE-Lsum is summary-level: rouge_score treats each line as a sentence. Like run_summarization,
the texts are first split into sentences with nltk.sent_tokenize, one per line, when nltk's
`punkt_tab` data is installed; without it (the usual offline case) the texts' own newlines are
the sentence boundaries, so put one sentence per line to get a summary-level score.
"""

import functools

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
    use_stemmer (bool): Porter-stem tokens before matching (default False).
Returns:
    {"rouge1": float, "rouge2": float, "rougeL": float, "rougeLsum": float}  (fractions, mean over examples)
"""

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


@functools.lru_cache(maxsize=1)
def sentence_splitter():
    """nltk.sent_tokenize when its punkt data is installed (never downloaded), else None."""
    try:
        import nltk

        nltk.sent_tokenize("One. Two.")
        return nltk.sent_tokenize
    except (ImportError, LookupError):
        return None


def one_sentence_per_line(text: str) -> str:
    """The text as rougeLsum reads it: run_summarization's nltk split, or its own lines."""
    split = sentence_splitter()
    return "\n".join(split(text)) if split is not None else text


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

    def _compute(self, predictions, references, use_stemmer=False):
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
        totals = dict.fromkeys(ROUGE_TYPES, 0.0)
        for prediction, reference in zip(predictions, references):
            # score(target, prediction): the reference comes first in rouge_score's signature.
            scores = scorer.score(one_sentence_per_line(reference), one_sentence_per_line(prediction))
            for name in ROUGE_TYPES:
                totals[name] += scores[name].fmeasure
        count = max(len(predictions), 1)
        return {name: value / count for name, value in totals.items()}
