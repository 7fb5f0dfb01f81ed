"""NER building blocks without a model: CoNLL reading, IOB2 checks, words, windows, decoding, seqeval."""

from pathlib import Path

import numpy as np
import pytest

from llmctl.errors import EXIT_DATA, DataError
from llmctl.tasks import ner_utils as nu


def conll(tmp_path: Path, text: str, name: str = "data.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- reading CoNLL --------------------------------------------------------------------------
def test_read_conll_skips_docstart_and_tolerates_tabs_spaces_and_trailing_blanks(tmp_path):
    path = conll(tmp_path, "-DOCSTART- -X- -X- O\n\nEU NNP B-ORG\nrejects\tVBZ\tO\n\n\n"
                           "Peter  NNP   B-PER\nBlackburn NNP I-PER\n-DOCSTART- -X- -X- O\nBonn NNP B-LOC\n\n\n\n")
    sents = nu.read_conll(path)
    assert sents.tokens == [["EU", "rejects"], ["Peter", "Blackburn"], ["Bonn"]]
    assert sents.tags == [["B-ORG", "O"], ["B-PER", "I-PER"], ["B-LOC"]]
    assert sents.token_lines == [[3, 4], [7, 8], [10]]
    assert sents.locate(1, 1) == f"{path}:8"


def test_read_conll_tag_index_picks_the_column(tmp_path):
    path = conll(tmp_path, "EU B-ORG B-NP\nrejects O B-VP\n")
    assert nu.read_conll(path, tag_index=1).tags == [["B-ORG", "O"]]
    assert nu.read_conll(path).tags == [["B-NP", "B-VP"]]
    with pytest.raises(DataError, match="conll_tag_index 5 is outside the 3 fields"):
        nu.read_conll(path, tag_index=5)


def test_read_conll_missing_tag_column_names_the_line(tmp_path):
    path = conll(tmp_path, "EU NNP B-ORG\nrejects NNP O\n\nGerman B-MISC\n")
    with pytest.raises(DataError) as info:
        nu.read_conll(path, key="data.train")
    assert f"data.train: {path}:4: 2 field(s) where line 1 has 3 (a missing tag column?)" in str(info.value)
    assert info.value.exit_code == EXIT_DATA
    with pytest.raises(DataError, match=r":1: the line has a token but no tag column"):
        nu.read_conll(conll(tmp_path, "EU\nrejects O\n", "one.txt"))


@pytest.mark.parametrize("text", ["", "\n\n  \n", "-DOCSTART- -X- -X- O\n\n"])
def test_read_conll_empty_file(tmp_path, text):
    with pytest.raises(DataError, match="has no sentences"):
        nu.read_conll(conll(tmp_path, text))


def test_read_conll_not_utf8_names_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("EU B-ORG\n\nK\xf6ln B-LOC\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.txt:3 is not UTF-8"):
        nu.read_conll(path)


# -- IOB2 ---------------------------------------------------------------------------------------
def sentences(*tag_rows):
    return nu.Sentences(where="d.txt", tokens=[["w"] * len(r) for r in tag_rows], tags=[list(r) for r in tag_rows],
                        token_lines=[[10 * (s + 1) + t for t in range(len(r))] for s, r in enumerate(tag_rows)])


def test_i_without_b_is_repaired_and_counted():
    sents = sentences(["B-PER", "I-PER", "O", "I-LOC"], ["B-ORG", "I-PER", "O"], ["B-LOC", "O", "B-PER"])
    repairs = nu.check_iob2(sents)
    assert repairs.count == 2 and repairs.first == "d.txt:13"
    assert sents.tags == [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "B-PER", "O"], ["B-LOC", "O", "B-PER"]]


@pytest.mark.parametrize("tags,message", [
    (["B-PER", "E-PER"], r"d.txt:11: tag 'E-PER' belongs to the IOBES/BILOU scheme"),
    (["S-LOC"], r"d.txt:10: tag 'S-LOC' belongs to the IOBES"),
    (["O", "PER"], r"d.txt:11: tag 'PER' is not IOB2"),
    (["O", "B-"], r"d.txt:11: tag 'B-' is not IOB2"),
])
def test_bad_tags_name_file_and_line(tags, message):
    with pytest.raises(DataError, match=message):
        nu.check_iob2(sentences(tags))


def test_iob1_alone_or_mixed_with_iob2_is_an_error():
    iob1 = sentences(["I-PER", "I-PER", "O", "I-LOC"], ["I-ORG", "B-ORG", "O"])
    with pytest.raises(DataError, match=r"d.txt:10: 3 entities start with I- as in IOB1; llmctl reads IOB2"):
        nu.check_iob2(iob1)
    mixed = sentences(["I-PER", "O", "I-LOC"], ["I-ORG"], ["B-LOC", "O"])
    with pytest.raises(DataError, match=r"3 entities start with I- .* 1 entities start with B- \(first at d.txt:30\)"):
        nu.check_iob2(mixed)


def test_label_set_from_training_has_both_prefixes_of_every_type():
    assert nu.fit_label_names([["B-PER", "O"], ["B-LOC", "I-LOC"], ["B-MISC"]]) == [
        "O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-PER", "I-PER"]


# -- words with offsets ---------------------------------------------------------------------------
def test_split_words_keeps_offsets_and_splits_punctuation():
    text = "  John's U.S. trip (1996-08-22) cost $1,000.50, O'Neill said."
    words, offsets = nu.split_words(text)
    assert words == ["John", "'s", "U.S.", "trip", "(", "1996-08-22", ")", "cost", "$", "1,000.50", ",",
                     "O'Neill", "said", "."]
    assert [text[a:b] for a, b in offsets] == words
    assert nu.split_words("") == ([], [])


# -- windows ----------------------------------------------------------------------------------------
def test_plan_windows_respects_budget_word_boundaries_and_overlap():
    lengths = [1, 2, 1, 3, 1, 1, 2, 1, 1, 2]  # 15 sub-tokens
    windows = nu.plan_windows(lengths, budget=6, overlap=2)
    assert windows[0] == (0, 3) and windows[-1][1] == len(lengths)
    for (a, b), (c, d) in zip(windows, windows[1:]):
        assert a < c <= b  # progress and no gap
        assert sum(lengths[c:b]) <= 2  # shared context is at most the overlap
    assert all(sum(lengths[a:b]) <= 6 for a, b in windows)
    assert nu.plan_windows(lengths, budget=100, overlap=2) == [(0, 10)]
    assert nu.plan_windows([], 5, 2) == [(0, 0)]
    # A word longer than the budget gets a window of its own.
    assert nu.plan_windows([2, 9, 2], budget=4, overlap=0) == [(0, 1), (1, 2), (2, 3)]


def test_stitch_takes_each_word_from_the_window_with_most_context():
    # 5 words of one sub-token; window A covers words 0-3, window B words 2-4 (positions after a 1-token prefix).
    a = np.zeros((6, 2)); a[:, 0] = 1  # window A says label 0 everywhere
    b = np.zeros((5, 2)); b[:, 1] = 1  # window B says label 1 everywhere
    windows = [(0, 4, a, [(1, 2), (2, 3), (3, 4), (4, 5)]), (2, 5, b, [(1, 2), (2, 3), (3, 4)])]
    probs, seen = nu.stitch(windows, 5, 2)
    # word 2: context 1 in A (position 2 of 0..3), 0 in B -> A; word 3: 0 in A, 1 in B -> B.
    assert probs.argmax(1).tolist() == [0, 0, 0, 1, 1] and seen.all()
    probs, seen = nu.stitch([(0, 2, a, [(1, 3), (3, 3)])], 2, 2, average=True)
    assert seen.tolist() == [True, False]  # the second word has no sub-tokens


# -- decoding -------------------------------------------------------------------------------------
LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def test_constrained_decoding_never_starts_an_entity_with_i():
    probs = np.array([[0.1, 0.3, 0.6, 0.0, 0.0],   # argmax I-PER at the start
                      [0.2, 0.1, 0.7, 0.0, 0.0],
                      [0.5, 0.0, 0.0, 0.0, 0.5],   # tie O / I-LOC right after PER
                      [0.2, 0.0, 0.0, 0.3, 0.5]])  # argmax I-LOC after O
    assert nu.decode(probs, LABELS, constrained=False) == ["I-PER", "I-PER", "O", "I-LOC"]
    assert nu.decode(probs, LABELS) == ["B-PER", "I-PER", "O", "B-LOC"]
    start, trans = nu.allowed_transitions(LABELS)
    assert not start[2] and trans[1, 2] and trans[2, 2] and not trans[0, 2] and not trans[3, 2]


def test_entities_from_tags():
    assert nu.entities(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]) == [
        ("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 6)]
    assert nu.entities(["O", "I-PER", "I-LOC"]) == [("PER", 1, 2), ("LOC", 2, 3)]  # lenient on invalid input
    assert nu.entities([]) == []


# -- the seqeval module: golden cases ----------------------------------------------------------------
@pytest.fixture(scope="module")
def seqeval():
    from llmctl import metrics

    return metrics.load("seqeval")


GOLD = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "I-ORG", "I-ORG", "O"]]


@pytest.mark.parametrize("pred,strict,lenient", [
    (GOLD, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)),
    # I-PER opens PER only in lenient mode (conlleval); strict IOB2 sees no entity there.
    ([["I-PER", "I-PER", "O", "B-LOC", "O"], GOLD[1]], (1.0, 2 / 3, 0.8), (1.0, 1.0, 1.0)),
    # A wrong boundary is wrong in both modes.
    ([GOLD[0], ["B-ORG", "I-ORG", "O", "O"]], (2 / 3, 2 / 3, 2 / 3), (2 / 3, 2 / 3, 2 / 3)),
    # B-ORG I-LOC: lenient makes two entities (ORG, LOC); strict keeps the single-word ORG only.
    ([GOLD[0], ["B-ORG", "I-LOC", "I-LOC", "O"]], (2 / 3, 2 / 3, 2 / 3), (0.5, 2 / 3, 4 / 7)),
])
def test_seqeval_strict_vs_lenient(seqeval, pred, strict, lenient):
    for mode, want in (("strict", strict), (None, lenient)):
        got = seqeval.compute(predictions=pred, references=GOLD, mode=mode)
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx(want), mode


def test_seqeval_per_type_keys_and_token_accuracy(seqeval):
    pred = [["B-PER", "I-PER", "O", "O", "O"], ["B-ORG", "I-ORG", "I-ORG", "O"]]
    got = seqeval.compute(predictions=pred, references=GOLD)
    assert got["accuracy"] == pytest.approx(8 / 9)
    assert got["LOC_recall"] == 0.0 and got["LOC_number"] == 1 and got["PER_f1"] == 1.0
    assert set(got) == {"precision", "recall", "f1", "accuracy"} | {
        f"{t}_{m}" for t in ("LOC", "ORG", "PER") for m in ("precision", "recall", "f1", "number")}
    assert all(type(v) in (float, int) for v in got.values())
    with pytest.raises(ValueError, match="2 tags but its reference has 5"):
        seqeval.compute(predictions=[["O", "O"], GOLD[1]], references=GOLD)
