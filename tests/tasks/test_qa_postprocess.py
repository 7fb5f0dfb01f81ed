"""QA post-processing with hand-made logits (plain numpy), and the oracle test: logits that
peak at the gold tokens of every window must give 100% exact match, through the real
windowing of the tiny BERT / GPT-2 / T5 tokenizers."""

from types import SimpleNamespace

import numpy as np
import pytest

from llmctl.tasks.qa import QAData, QATask
from llmctl.tasks.qa_postprocess import offsets_array, postprocess, postprocess_example
from qa_helpers import make_articles, write_squad

CONTEXT = "Paris is the capital of France."
#          [CLS] where ?  [SEP] paris    is      the      capital   of        france    .         [SEP]
OFFSETS = offsets_array([None, None, None, None, (0, 5), (6, 8), (9, 12), (13, 20), (21, 23), (24, 30), (30, 31), None])


def logits(peaks: dict, n: int = len(OFFSETS), base: float = -10.0) -> np.ndarray:
    out = np.full(n, base)
    for i, v in peaks.items():
        out[i] = v
    return out


def one(start, end, **kw):
    return postprocess_example(CONTEXT, [start], [end], [OFFSETS], **kw)


def test_text_comes_from_context_offsets():
    p = one(logits({9: 5}), logits({9: 5}))
    assert (p.text, p.start, p.end) == ("France", 24, 30)
    assert p.score == 10.0 and 0 < p.probability <= 1


def test_question_special_and_padding_tokens_are_never_answers():
    # Huge logits on question tokens and on padding beyond the offsets are ignored.
    start = np.concatenate([logits({1: 50, 4: 5}), [99.0, 99.0]])
    end = np.concatenate([logits({2: 50, 4: 5}), [99.0, 99.0]])
    assert one(start, end).text == "Paris"


def test_max_answer_length_and_end_before_start():
    start, end = logits({4: 10}), logits({9: 10, 5: 2})
    assert one(start, end, max_answer_length=6).text == "Paris is the capital of France"
    assert one(start, end, max_answer_length=3).text == "Paris is"  # 6 tokens is too long
    # End before start is not a span, however high the logits.
    assert one(logits({9: 10}), logits({4: 10, 9: 1})).text == "France"


def test_v2_null_threshold():
    start, end = logits({0: 8, 9: 5}), logits({0: 8, 9: 5})
    p = one(start, end, version_2=True)
    assert p.no_answer and p.null_score_diff == pytest.approx(6.0)
    assert p.text == "France"  # the best span is still reported (the metric's best threshold needs it)
    assert not one(start, end, version_2=True, null_threshold=7.0).no_answer
    assert not one(start, end, version_2=False).no_answer  # v1 never answers "no answer"


def test_windows_min_null_best_span_and_dedup():
    # Two overlapping windows of one example: the second holds "capital" with a better score;
    # "France" appears in both and is listed once, with its best score.
    a = (logits({0: 9, 9: 3}), logits({0: 9, 9: 3}))
    b = (logits({0: 1, 7: 6, 9: 4}), logits({0: 1, 7: 6, 9: 4}))
    p = postprocess_example(CONTEXT, [a[0], b[0]], [a[1], b[1]], [OFFSETS, OFFSETS], version_2=True)
    assert p.text == "capital" and p.null_score == 2.0  # min over windows
    texts = [c["text"] for c in p.n_best]
    assert texts[:3] == ["capital", "capital of France", "France"] and texts.count("France") == 1
    assert [c["score"] for c in p.n_best[:3]] == [12.0, 10.0, 8.0]
    assert sum(c["probability"] for c in p.n_best) < 1  # v2: the null answer takes its share


def test_whitespace_in_offsets_is_trimmed():
    # Byte-level BPE (GPT-2) offsets include the leading space: " France" = (23, 30).
    offsets = OFFSETS.copy()
    offsets[9] = (23, 30)
    p = postprocess_example(CONTEXT, [logits({9: 5})], [logits({9: 5})], [offsets])
    assert (p.text, p.start, p.end) == ("France", 24, 30)


def test_no_valid_span_and_examples_in_any_order():
    empty = offsets_array([None] * 4)
    p = postprocess_example("x", [np.zeros(4)], [np.zeros(4)], [empty])
    assert (p.text, p.start, p.end) == ("", None, None)
    out = postprocess(["Paris is big.", CONTEXT], [1, 0, 1],
                      [logits({9: 5}), logits({4: 5}, n=6), logits({7: 1})],
                      [logits({9: 5}), logits({4: 5}, n=6), logits({7: 1})],
                      [OFFSETS, offsets_array([None, None, None, None, (0, 5), None]), OFFSETS])
    assert [p.text for p in out] == ["Paris", "France"]


# -- the oracle ---------------------------------------------------------------------------
def oracle_logits(features, rng):
    """Per window: peaks at the gold start/end tokens (or the null position when the answer is
    not inside), small noise elsewhere, and a few padded positions with large junk."""
    starts, ends = [], []
    for i, n in enumerate(features.lengths):
        s, e = features.meta["start_positions"][i], features.meta["end_positions"][i]
        start, end = rng.normal(0, 0.1, n + 3), rng.normal(0, 0.1, n + 3)
        start[n:] = end[n:] = 50.0  # padding from the batch: must be ignored
        start[s] += 20.0
        end[e] += 20.0
        starts.append(start)
        ends.append(end)
    return {"start_logits": starts, "end_logits": ends}


@pytest.mark.parametrize("family", ["bert", "gpt2", "t5"])
@pytest.mark.parametrize("version_2", [False, True])
def test_oracle_logits_give_100_percent(family, version_2, tiny_models, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models[family])
    articles = make_articles(n_articles=1, paragraphs=3, people=6, seed=3, unanswerable=2 if version_2 else 0)
    path = write_squad(tmp_path / "dev.json", articles, "v2.0" if version_2 else "1.1")
    task = QATask(QAData(max_length=48, doc_stride=12, max_answer_length=10, version_2_with_negative=version_2))
    split = task.load_split("validation", str(path))
    features = task.featurize(split, tokenizer)

    windows = np.bincount(features.meta["example"])
    assert windows.max() > 3, "contexts must span more than three windows"
    inside = np.zeros(len(split), dtype=int)
    for i, ex in enumerate(features.meta["example"]):
        inside[ex] += features.meta["start_positions"][i] != 0
    answerable = np.array([bool(a) for a in split.answers])
    assert (inside[answerable] >= 1).all(), "every answer must fit whole in some window"
    assert (inside >= 2).sum() >= 3, "some answers must sit in the overlap of two windows"
    assert (inside[~answerable] == 0).all()

    kept = oracle_logits(features, np.random.default_rng(0))
    scores = task.compute_metrics(kept, features, split)
    assert scores["exact_match"] == 100.0 and scores["f1"] == 100.0
    assert scores["loss"] < 1e-3
    if version_2:
        assert scores["NoAns_total"] == 6 and scores["NoAns_exact"] == 100.0 and scores["HasAns_exact"] == 100.0
    # The text is cut from the original context, so it equals the gold text exactly (case included).
    for p, gold in zip(task.predictions(kept, features, split), split.answers):
        if gold:
            assert (p.text, p.start) == gold[0]


def test_left_padding_is_realigned(tiny_models, tmp_path):
    """A tokenizer that pads on the left: labels shift with the padding, and kept logits are moved
    back so position i is token i of the window (offsets and the null index line up)."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["gpt2"])
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    path = write_squad(tmp_path / "train.json", make_articles(1, 1, 4, seed=5))
    task = QATask(QAData(max_length=40, doc_stride=10))
    features = task.featurize(task.load_split("train", str(path)), tokenizer)
    rows = features.rows(range(len(features)))
    batch = task.collate(rows, tokenizer)
    width = batch["input_ids"].shape[1]
    lengths = torch.tensor(features.lengths)
    assert (batch["attention_mask"].sum(1) == lengths).all() and (batch["attention_mask"][:, -1] == 1).all()
    assert (batch["start_positions"] == torch.tensor(features.columns["start_positions"]) + width - lengths).all()
    # Fake model outputs peaking at the (shifted) label positions.
    onehot = torch.nn.functional.one_hot(batch["start_positions"], width).float()
    kept = task.outputs_to_keep(SimpleNamespace(start_logits=onehot, end_logits=onehot), batch)
    assert kept["start_logits"].argmax(1).tolist() == features.columns["start_positions"]
