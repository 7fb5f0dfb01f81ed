"""Corpus BLEU through `sacrebleu.corpus_bleu` with its defaults: the `13a` tokenizer
(mteval-v13a), case-sensitive, n-grams up to 4 with clipped counts summed over the corpus,
`exp` smoothing, and the brevity penalty from the summed lengths. The score is 0-100.
"""

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


def tokenize_13a(line: str) -> list[str]:
    """The tokens BLEU counts in a line (sacrebleu's 13a tokenizer), to show what was matched."""
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()(line).split()


def reference_streams(references: list[list[str]]) -> list[list[str | None]]:
    """sacrebleu wants one stream per reference position; a prediction with fewer references
    than the most has None there, which sacrebleu skips."""
    most = max((len(refs) for refs in references), default=0)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(most)]


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
        import sacrebleu

        references = [[r] if isinstance(r, str) else list(r) for r in references]
        result = sacrebleu.corpus_bleu(list(predictions), reference_streams(references))
        return {"bleu": result.score, "precisions": list(result.precisions), "brevity_penalty": result.bp,
                "sys_len": result.sys_len, "ref_len": result.ref_len}
