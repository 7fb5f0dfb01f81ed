"""The shipped metric modules against their references: ROUGE and BLEU against rouge_score and
sacrebleu called directly on the same texts (exact equality), and the classification, SQuAD and
seqeval modules against the example values in the docstrings of evaluate's own metric scripts
(github.com/huggingface/evaluate, metrics/<name>/<name>.py, "Examples:")."""

import pytest

from llmctl import metrics

# XSum-style one-sentence summaries, and multi-sentence ones with a sentence per line (rougeLsum's unit).
PREDICTIONS = [
    "A man has been charged with murder after a woman was found dead in a house in Cardiff.",
    "The UK's biggest banks are being told to hold more capital.\nRegulators said the rules start next year.",
    "Scientists found running shoes improve the runners' times.\nThe study tested 40 athletes.\nIt was funded by a shoe maker.",
    "Heavy rain caused flooding across the north of England on Sunday.",
    "",
]
REFERENCES = [
    "A 35-year-old man has been charged with the murder of a woman whose body was found at a Cardiff home.",
    "Banks in the UK must hold more capital, regulators have said.\nThe new rules come into force next year.",
    "Runners in new shoes ran faster, a study found.\nForty athletes were tested.\nA shoe company paid for the research.",
    "Parts of northern England were flooded after heavy rain on Sunday.",
    "Nothing was predicted for this one.",
]


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_rouge_equals_rouge_score_on_the_same_texts(use_stemmer):
    from rouge_score import rouge_scorer

    # Without nltk's punkt data (this machine) rougeLsum's sentences are the texts' own lines.
    rouge_module = __import__("sys").modules[type(metrics.load("rouge")).__module__]
    assert rouge_module.sentence_splitter() is None, "nltk punkt is installed: split the texts with it below"
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=use_stemmer)
    scores = [scorer.score(reference, prediction) for prediction, reference in zip(PREDICTIONS, REFERENCES)]
    expected = {name: sum(s[name].fmeasure for s in scores) / len(scores) for name in scores[0]}
    got = metrics.load("rouge").compute(predictions=PREDICTIONS, references=REFERENCES, use_stemmer=use_stemmer)
    assert got == expected
    assert got["rougeLsum"] != got["rougeL"]  # the lines really were scored as sentences


def test_stemming_changes_rouge_as_in_run_summarization():
    pair = {"predictions": ["the runners were running"], "references": ["a runner runs"]}
    assert metrics.load("rouge").compute(**pair)["rouge1"] == 0.0
    assert metrics.load("rouge").compute(**pair, use_stemmer=True)["rouge1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))


def test_bleu_equals_sacrebleu_corpus_bleu():
    import sacrebleu

    got = metrics.load("bleu").compute(predictions=PREDICTIONS, references=REFERENCES)
    expected = sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES])
    assert got["bleu"] == expected.score and got["precisions"] == expected.precisions
    assert (got["brevity_penalty"], got["sys_len"], got["ref_len"]) == (expected.bp, expected.sys_len, expected.ref_len)


def test_bleu_with_a_varying_number_of_references_equals_sacrebleu():
    import sacrebleu

    references = [[REFERENCES[0], PREDICTIONS[0]], [REFERENCES[1]], [REFERENCES[2], REFERENCES[3], PREDICTIONS[2]]]
    got = metrics.load("bleu").compute(predictions=PREDICTIONS[:3], references=references)
    streams = [[REFERENCES[0], REFERENCES[1], REFERENCES[2]], [PREDICTIONS[0], None, REFERENCES[3]],
               [None, None, PREDICTIONS[2]]]
    expected = sacrebleu.corpus_bleu(PREDICTIONS[:3], streams)
    assert got["bleu"] == expected.score and got["ref_len"] == expected.ref_len


def test_accuracy_documented_examples():
    # metrics/accuracy/accuracy.py, Examples 1-3.
    acc = metrics.load("accuracy")
    refs, preds = [0, 1, 2, 0, 1, 2], [0, 1, 1, 2, 1, 0]
    assert acc.compute(references=refs, predictions=preds) == {"accuracy": 0.5}
    assert acc.compute(references=refs, predictions=preds, normalize=False) == {"accuracy": 3.0}
    weighted = acc.compute(references=refs, predictions=preds, sample_weight=[0.5, 2, 0.7, 0.5, 9, 0.4])
    assert weighted["accuracy"] == pytest.approx(0.8778625954198473, abs=1e-15)


def test_f1_documented_examples():
    # metrics/f1/f1.py, Examples 1, 2 and 4.
    f1 = metrics.load("f1")
    assert f1.compute(references=[0, 1, 0, 1, 0], predictions=[0, 0, 1, 1, 0]) == {"f1": 0.5}
    assert round(f1.compute(references=[0, 1, 0, 1, 0], predictions=[0, 0, 1, 1, 0], pos_label=0)["f1"], 2) == 0.67
    preds, refs = [0, 2, 1, 0, 0, 1], [0, 1, 2, 0, 1, 2]
    shown = {average: round(f1.compute(predictions=preds, references=refs, average=average)["f1"], 2)
             for average in ("macro", "micro", "weighted")}
    assert shown == {"macro": 0.27, "micro": 0.33, "weighted": 0.27}


def test_matthews_pearson_spearman_documented_examples():
    # metrics/matthews_correlation (Example 1), pearsonr (Example 1; ours is named "pearson", as
    # run_glue reports it) and spearmanr (Example 1).
    mcc = metrics.load("matthews_correlation").compute(references=[1, 3, 2, 0, 3, 2], predictions=[1, 2, 2, 0, 3, 3])
    assert round(mcc["matthews_correlation"], 2) == 0.54
    pearson = metrics.load("pearsonr").compute(predictions=[10, 9, 2.5, 6, 4], references=[1, 2, 3, 4, 5])
    assert round(pearson["pearson"], 2) == -0.74
    spearman = metrics.load("spearmanr").compute(references=[1, 2, 3, 4, 5], predictions=[10, 9, 2.5, 6, 4])
    assert spearman["spearmanr"] == pytest.approx(-0.7, abs=1e-12)


def test_glue_documented_examples():
    # metrics/glue/glue.py: sst2 accuracy, mrpc accuracy + f1, stsb pearson + spearmanr, cola matthews.
    assert metrics.load("accuracy").compute(predictions=[0, 1], references=[0, 1]) == {"accuracy": 1.0}
    assert metrics.load("f1").compute(predictions=[0, 1], references=[0, 1]) == {"f1": 1.0}
    values = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert round(metrics.load("pearsonr").compute(predictions=values, references=values)["pearson"], 2) == 1.0
    assert round(metrics.load("spearmanr").compute(predictions=values, references=values)["spearmanr"], 2) == 1.0
    assert metrics.load("matthews_correlation").compute(predictions=[0, 1], references=[0, 1]) == {
        "matthews_correlation": 1.0}


def test_squad_documented_examples():
    # metrics/squad/squad.py and metrics/squad_v2/squad_v2.py, Examples.
    predictions = [{"prediction_text": "1976", "id": "56e10a3be3433e1400422b22"}]
    references = [{"answers": {"answer_start": [97], "text": ["1976"]}, "id": "56e10a3be3433e1400422b22"}]
    assert metrics.load("squad").compute(predictions=predictions, references=references) == {
        "exact_match": 100.0, "f1": 100.0}
    v2 = metrics.load("squad_v2").compute(predictions=[predictions[0] | {"no_answer_probability": 0.0}],
                                          references=references)
    assert {k: v2[k] for k in ("exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "best_exact",
                               "best_f1")} == {"exact": 100.0, "f1": 100.0, "total": 1, "HasAns_exact": 100.0,
                                               "HasAns_f1": 100.0, "HasAns_total": 1, "best_exact": 100.0,
                                               "best_f1": 100.0}


def test_seqeval_documented_example():
    # metrics/seqeval/seqeval.py, Examples.
    predictions = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    references = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    results = metrics.load("seqeval").compute(predictions=predictions, references=references)
    # Ours names evaluate's overall_f1 "f1" and its PER["f1"] "PER_f1" (flat, like every other metric).
    assert results["f1"] == 0.5 and results["PER_f1"] == 1.0
