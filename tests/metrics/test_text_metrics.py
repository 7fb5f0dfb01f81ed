"""Golden tests for the local ROUGE and BLEU modules: values computed by hand below.

The modules call rouge_score and sacrebleu (tests/metrics/test_reference_metrics.py compares them with
those libraries called directly); the figures here are worked out from the definitions.
"""

import math

import pytest

from llmctl import metrics


@pytest.fixture(scope="module")
def rouge():
    return metrics.load("rouge")


@pytest.fixture(scope="module")
def bleu():
    return metrics.load("bleu")


def test_rouge_n_and_l_by_hand(rouge):
    # pred: the cat sat on the mat / ref: the cat sat on a mat (6 tokens each)
    # unigrams: "the" is clipped to one match -> 5/6; bigrams 3/5; LCS "the cat sat on mat" = 5.
    out = rouge.compute(predictions=["the cat sat on the mat"], references=["the cat sat on a mat"])
    assert out == pytest.approx({"rouge1": 5 / 6, "rouge2": 3 / 5, "rougeL": 5 / 6, "rougeLsum": 5 / 6})


def test_rouge_precision_and_recall_differ(rouge):
    # pred 2 tokens, ref 4 tokens, 2 shared: P = 1, R = 1/2, F = 2/3; one shared bigram of 1 and 3.
    out = rouge.compute(predictions=["big dog"], references=["a big dog barks"])
    assert out["rouge1"] == pytest.approx(2 / 3)
    assert out["rouge2"] == pytest.approx(2 * 1 * (1 / 3) / (1 + 1 / 3))


def test_rouge_lsum_is_summary_level_union_lcs(rouge):
    # Lin (2004), section 3.2: r = a b c d e; candidate sentences "a c h i e" and "a b f g h".
    # Union LCS = {a, b, c, e}: 4 hits, P = 4/10, R = 4/5 -> F = 8/15. Flattened ROUGE-L only
    # finds "a c e" (3): P = 3/10, R = 3/5 -> F = 0.4.
    out = rouge.compute(predictions=["a c h i e\na b f g h"], references=["a b c d e"])
    assert out["rougeLsum"] == pytest.approx(8 / 15)
    assert out["rougeL"] == pytest.approx(0.4)


def test_rouge_tokenizes_like_rouge_score_and_averages_examples(rouge):
    # Lower case, punctuation splits words ("Cat's" -> cat s); an empty prediction scores 0.
    out = rouge.compute(predictions=["The CAT's hat!", ""], references=["the cat s hat", "anything"])
    assert out["rouge1"] == pytest.approx(0.5) and out["rougeL"] == pytest.approx(0.5)
    # Letters outside ASCII stay letters (rouge_score would drop them and score 0).
    assert rouge.compute(predictions=["café crème"], references=["Café crème"])["rouge1"] == pytest.approx(1.0)


def test_bleu_four_gram_precisions_by_hand(bleu):
    # Same pair as the ROUGE test: p1..p4 = 5/6, 3/5, 2/4, 1/3, equal lengths (BP = 1).
    out = bleu.compute(predictions=["the cat sat on the mat"], references=["the cat sat on a mat"])
    assert out["precisions"] == pytest.approx([500 / 6, 60.0, 50.0, 100 / 3])
    assert out["brevity_penalty"] == 1.0
    assert out["bleu"] == pytest.approx(100 * (1 / 12) ** 0.25)  # 53.728...


def test_bleu_brevity_penalty_and_corpus_level_counts(bleu):
    # Perfect n-grams, 6 tokens against a 7-token reference: BP = exp(1 - 7/6).
    out = bleu.compute(predictions=["the cat sat on the mat"], references=["the cat sat on the mat today"])
    assert out["bleu"] == pytest.approx(100 * math.exp(-1 / 6))
    # Counts are summed over the corpus before dividing (not an average of sentence scores).
    two = bleu.compute(predictions=["the cat sat on the mat", "the cat sat on the mat"],
                       references=["the cat sat on a mat", "the cat sat on the mat"])
    assert two["precisions"] == pytest.approx([1100 / 12, 800 / 10, 600 / 8, 400 / 6])


def test_bleu_exp_smoothing_and_no_match(bleu):
    # a b c d vs a b x d: p1 = 3/4, p2 = 1/3, no 3-gram (of 2) or 4-gram (of 1) matches:
    # exp smoothing gives them 100 / (2 * 2) and 100 / (4 * 1).
    out = bleu.compute(predictions=["a b c d"], references=["a b x d"])
    assert out["precisions"] == pytest.approx([75.0, 100 / 3, 25.0, 25.0])
    assert out["bleu"] == pytest.approx(100 * (0.75 * (1 / 3) * 0.25 * 0.25) ** 0.25)
    assert bleu.compute(predictions=["x y z w"], references=["a b c d"])["bleu"] == 0.0


def test_bleu_13a_tokenizer_and_multiple_references(bleu):
    import sys

    tokenize = sys.modules[type(bleu).__module__].tokenize_13a  # the module evaluate imported
    assert tokenize("Hello, world! It costs 3.50 (really).") == \
        ["Hello", ",", "world", "!", "It", "costs", "3.50", "(", "really", ")", "."]
    assert tokenize("well-known 1,000 in 2-3 &amp; more") == ["well-known", "1,000", "in", "2", "-", "3", "&", "more"]
    # Case matters (sacrebleu's default); each n-gram is clipped by its best reference.
    assert bleu.compute(predictions=["The cat"], references=["the cat"])["precisions"][0] == 50.0
    out = bleu.compute(predictions=["the cat sat on the mat"],
                       references=[["the cat sat on a mat", "the cat sat on the mat"]])
    assert out["bleu"] == pytest.approx(100.0)
