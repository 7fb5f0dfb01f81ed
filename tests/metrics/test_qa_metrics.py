"""Golden tests: the local squad / squad_v2 modules give the official scripts' numbers on
hand-made predictions whose scores were worked out by hand from the official rules."""

import pytest

from llmctl import metrics


def refs(*golds):
    return [{"id": f"q{i}", "answers": {"text": list(g), "answer_start": [0] * len(g)}} for i, g in enumerate(golds)]


def preds(*texts, na=None):
    out = [{"id": f"q{i}", "prediction_text": t} for i, t in enumerate(texts)]
    if na is not None:
        for p, value in zip(out, na):
            p["no_answer_probability"] = value
    return out


def test_v1_official_normalisation_and_best_gold():
    result = metrics.load("squad").compute(
        predictions=preds("The Eiffel Tower", "in Paris, France", "the big red dog", "Denver Broncos!", "1990s"),
        references=refs(["Eiffel Tower"],            # articles dropped: exact
                        ["Paris", "France"],         # 1 of 3 tokens: P 1/3, R 1 -> F1 0.5
                        ["red dog house", "a cat"],  # big red dog vs red dog house: P = R = 2/3
                        ["denver broncos"],          # case and punctuation: exact
                        ["1990"]),                   # different token: 0
    )
    assert result["exact_match"] == pytest.approx(100 * 2 / 5)
    assert result["f1"] == pytest.approx(100 * (1 + 0.5 + 2 / 3 + 1 + 0) / 5)
    assert set(result) == {"exact_match", "f1"}


def test_v1_empty_prediction_and_perfect():
    m = metrics.load("squad")
    assert m.compute(predictions=preds("", "x"), references=refs(["a b"], ["x"])) == {"exact_match": 50.0, "f1": 50.0}
    assert m.compute(predictions=preds("an  Apple."), references=refs(["apple"])) == {"exact_match": 100.0, "f1": 100.0}


def test_v1_rejects_unanswerable_references():
    with pytest.raises(ValueError, match="squad_v2"):
        metrics.load("squad").compute(predictions=preds("x"), references=refs([]))


V2_PREDS = ("Paris", "the big red dog", "Berlin", "Rome", "Oslo")
V2_GOLDS = (["Paris"], ["red dog house"], [], [], ["Oslo"])  # q2, q3 unanswerable
V2_NA = (0.1, 0.3, 0.8, 0.35, 0.9)


def test_v2_threshold_breakdown_and_best_threshold():
    result = metrics.load("squad_v2").compute(predictions=preds(*V2_PREDS, na=V2_NA), references=refs(*V2_GOLDS),
                                              na_prob_thresh=0.5)
    # na > 0.5 -> predicted unanswerable: q2 (right) and q4 (wrong, it has an answer).
    # exact per question: 1, 0, 1, 0, 0; F1: 1, 2/3, 1, 0, 0.
    assert result["exact"] == pytest.approx(40.0)
    assert result["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1) / 5)
    assert result["HasAns_exact"] == pytest.approx(100 / 3) and result["HasAns_f1"] == pytest.approx(100 * (5 / 3) / 3)
    assert result["NoAns_exact"] == 50.0 and result["NoAns_f1"] == 50.0
    assert (result["total"], result["HasAns_total"], result["NoAns_total"]) == (5, 3, 2)
    # Sweeping the threshold over sorted na values (official find_best_thresh): start with all
    # unanswerable = 2 right; answer q0 (+1 -> 3 @0.1), q1 (+0 exact / +2/3 F1 @0.3), q3 (-1), q2 (-1), q4 (+1).
    assert result["best_exact"] == pytest.approx(60.0) and result["best_exact_thresh"] == pytest.approx(0.1)
    assert result["best_f1"] == pytest.approx(100 * (3 + 2 / 3) / 5) and result["best_f1_thresh"] == pytest.approx(0.3)


def test_v2_defaults_match_the_official_script():
    # No probabilities given: official default na_prob 0.0 and threshold 1.0 -> every prediction stands.
    m = metrics.load("squad_v2")
    result = m.compute(predictions=preds("", "Paris", "x", na=[0.0] * 3), references=refs([], ["Paris"], []))
    assert result["exact"] == pytest.approx(200 / 3) and result["NoAns_exact"] == 50.0 and result["HasAns_exact"] == 100.0
    # Only answerable questions: no NoAns_* keys, as in the official output.
    only = m.compute(predictions=preds("Paris", na=[0.0]), references=refs(["Paris"]))
    assert "NoAns_exact" not in only and only["HasAns_total"] == 1
    # A gold answer that normalises to nothing ("the") counts as has-answer; only "" matches it.
    odd = m.compute(predictions=preds("", na=[0.0]), references=refs(["The"]))
    assert odd["HasAns_exact"] == 100.0


def test_v2_score_differences_as_na_values():
    # llmctl passes null-score minus best-span score (any real number) and its own threshold.
    result = metrics.load("squad_v2").compute(predictions=preds("Paris", "Rome", na=[-3.5, 2.0]),
                                              references=refs(["Paris"], []), na_prob_thresh=0.0)
    assert result["exact"] == 100.0
    assert result["best_exact"] == 100.0 and result["best_exact_thresh"] == pytest.approx(-3.5)
